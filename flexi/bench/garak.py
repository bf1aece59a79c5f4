"""Running NVIDIA's garak for `flexi safety`: where it lives, how it is installed and started, what it may reach.

garak declares torch, transformers, langchain, litellm and several cloud SDKs as dependencies. None of them is
needed by the probes Flexi runs (their detectors match strings and word lists), and none may enter Flexi's own
environment. So garak lives in its own virtual environment, installed with `--no-deps` plus only the modules those
probes import (`install`, also behind `flexi safety --install` and scripts/install-garak.sh), and runs as a
subprocess (`<venv>/bin/python -m garak`).

The subprocess is kept off the network except for the Flexi server: Hugging Face and `datasets` offline switches,
an unusable proxy for every host but the target (so a stray download fails at once instead of reaching out), and
its own XDG and NLTK directories inside the run's work directory (no site config, no caches left behind).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from flexi.i18n import t

GARAK_VERSION = "0.17.1"
# What the curated probes, their detectors and garak's run loop import (found by running them), with garak's own
# bounds. garak itself is installed with --no-deps.
GARAK_REQUIREMENTS = (
    "pyyaml>=6.0", "xdg-base-dirs>=6.0.1", "colorama>=0.4.3", "tqdm>=4.67.1", "openai>=2.0,<3.0",
    "backoff>=2.1.1", "jsonschema>=4.0", "requests>=2.28", "aiohttp>=3.9", "numpy>=2.0.0", "nltk>=3.10.3",
    "langdetect==1.0.9", "datasets>=5.0.1,<6.0", "markdown>=3.10.0", "mikeshardmind-base2048>=1.0.2",
    "ecoji>=0.1.1", "zalgolib>=0.2.2",
)
ENV_VAR = "FLEXI_GARAK"
API_KEY_ENV = "OPENAICOMPATIBLE_API_KEY"  # where garak's OpenAICompatible generator reads the key
_DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so any proxied request fails at once


class GarakError(Exception):
    """garak could not be run (missing, failed, no report); the message is for the user."""


class GarakMissing(GarakError):
    """No usable garak at the configured place."""


def default_venv(env: Mapping[str, str] | None = None) -> Path:
    """~/.cache/flexi/garak-venv (XDG_CACHE_HOME respected)."""
    env = os.environ if env is None else env
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "flexi" / "garak-venv"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def resolve_python(path: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The Python that runs garak: --garak PATH, else FLEXI_GARAK, else the default venv.

    PATH is a virtual environment's directory or its Python (a file, or a missing path named python…)."""
    env = os.environ if env is None else env
    raw = path or env.get(ENV_VAR) or str(default_venv(env))
    candidate = Path(raw).expanduser()
    if candidate.is_file() or (not candidate.exists() and candidate.name.startswith("python")):
        return candidate
    return _venv_python(candidate)


def install_hint() -> str:
    return f"flexi safety --install  (or: scripts/install-garak.sh; {ENV_VAR}=/path/to/venv)"


def garak_version(python: Path, timeout: float = 120) -> str:
    """garak's version in that interpreter; GarakMissing (with how to install it) when there is none."""
    try:
        done = subprocess.run([str(python), "-c", "import garak; print(garak.__version__)"], capture_output=True,
                              text=True, timeout=timeout, check=False, env=_clean_env(os.environ))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GarakMissing(t("safety_garak_missing", path=python, detail=exc, hint=install_hint())) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["exit code " + str(done.returncode)])[-1]
        raise GarakMissing(t("safety_garak_missing", path=python, detail=last, hint=install_hint()))
    return done.stdout.strip()


Runner = Callable[..., Any]


def install(venv: Path, python: str = sys.executable, run: Runner = subprocess.run) -> Path:
    """A virtual environment at `venv` with garak and only what Flexi's probes need; returns its Python.

    pip's cache is used as usual, so a second install (CI) is fast. Raises GarakError if a step fails."""
    steps: list[Sequence[str]] = [
        [python, "-m", "venv", str(venv)],
        [str(_venv_python(venv)), "-m", "pip", "install", "--quiet", *GARAK_REQUIREMENTS],
        # last and alone, so pip does not try to resolve (and download) garak's declared dependencies
        [str(_venv_python(venv)), "-m", "pip", "install", "--quiet", "--no-deps", f"garak=={GARAK_VERSION}"],
    ]
    for step in steps:
        try:
            done = run(list(step), check=False)
        except OSError as exc:
            raise GarakError(t("safety_install_failed", command=" ".join(step[:4]), detail=exc)) from None
        if done.returncode != 0:
            raise GarakError(t("safety_install_failed", command=" ".join(step[:4]),
                               detail=f"exit code {done.returncode}"))
    return _venv_python(venv)


def _clean_env(base: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without what would make garak's interpreter import Flexi's packages."""
    return {k: v for k, v in base.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def garak_env(base: Mapping[str, str], work_dir: Path, target_url: str, api_key: str | None) -> dict[str, str]:
    """The environment of one garak run: offline, no proxy but for the target, its own directories."""
    host = httpx.URL(target_url).host
    env = _clean_env(base)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = _DEAD_PROXY
    no_proxy = ",".join(dict.fromkeys([host, "localhost", "127.0.0.1", "::1"]))
    env.update({
        "NO_PROXY": no_proxy, "no_proxy": no_proxy,
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "HF_HOME": str(work_dir / "hf"),
        "XDG_CONFIG_HOME": str(work_dir / "xdg" / "config"), "XDG_DATA_HOME": str(work_dir / "xdg" / "data"),
        "XDG_CACHE_HOME": str(work_dir / "xdg" / "cache"), "NLTK_DATA": str(work_dir / "nltk_data"),
        "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1",
        API_KEY_ENV: api_key or "none",  # garak insists on a key; a server without authentication ignores it
    })
    return env


class _ReportTail:
    """The lines garak has appended to its report since the last look (only complete ones)."""

    def __init__(self, path: Path, on_line: Callable[[str], None] | None) -> None:
        self.path, self.on_line, self.offset = path, on_line, 0

    def read(self) -> None:
        if self.on_line is None:
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            self.on_line(line)


@dataclass
class GarakRun:
    """One garak invocation for one model."""

    python: Path
    target_url: str  # the Flexi server, without /v1
    model: str
    spec: str  # garak's --spec: "probes.a.B,probes.c.D"
    work_dir: Path
    prompt_cap: int
    max_tokens: int = 100
    generations: int = 1
    seed: int = 1
    probe_options: dict[str, Any] | None = None
    timeout: float | None = None

    @property
    def report_path(self) -> Path:
        return self.work_dir / "garak.report.jsonl"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "garak.out.log"

    def config(self) -> dict[str, Any]:
        """garak's run configuration (JSON, which garak reads like its YAML)."""
        return {
            "system": {"lite": True, "parallel_attempts": False, "parallel_requests": False, "narrow_output": True},
            "run": {"generations": self.generations, "soft_probe_prompt_cap": self.prompt_cap, "seed": self.seed},
            "plugins": {
                "target_type": "openai.OpenAICompatible", "target_name": self.model,
                "extended_detectors": False,  # only each probe's primary detector: the extended ones need HF models or API keys
                "generators": {"openai": {"OpenAICompatible": {
                    "uri": self.target_url.rstrip("/") + "/v1", "max_tokens": self.max_tokens,
                    "temperature": 0, "stop": [],  # garak's default stops ("#", ";") would cut answers short
                }}},
                "probes": self.probe_options or {},
            },
            "reporting": {"report_dir": str(self.work_dir), "report_prefix": "garak",
                          "confidence_interval_method": "none"},
        }

    def command(self, config_path: Path) -> list[str]:
        return [str(self.python), "-m", "garak", "--config", str(config_path), "--spec", self.spec]

    def run(self, api_key: str | None, base_env: Mapping[str, str] | None = None,
            on_line: Callable[[str], None] | None = None, poll_s: float = 1.0) -> Path:
        """Run garak; the path of its report.jsonl. GarakError when it fails, times out or writes no report.

        `on_line` gets each complete line garak appends to its report while it runs (progress for long runs).
        An interrupted or timed-out garak is stopped, never left running."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for old in self.work_dir.glob("garak.*jsonl"):  # an earlier run's report must never pass for this one's
            old.unlink()
        config_path = self.work_dir / "garak-config.json"
        config_path.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        env = garak_env(os.environ if base_env is None else base_env, self.work_dir, self.target_url, api_key)
        tail = _ReportTail(self.report_path, on_line)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with open(self.log_path, "wb") as log:
            try:
                proc = subprocess.Popen(self.command(config_path), env=env, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.work_dir)
            except OSError as exc:
                raise GarakMissing(t("safety_garak_missing", path=self.python, detail=exc,
                                     hint=install_hint())) from None
            try:
                while True:
                    try:
                        code = proc.wait(poll_s)
                        break
                    except subprocess.TimeoutExpired:
                        tail.read()
                        if deadline is not None and time.monotonic() > deadline:
                            raise GarakError(t("safety_garak_timeout", seconds=self.timeout,
                                               log=self.log_path)) from None
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        tail.read()
        if code != 0:
            raise GarakError(t("safety_garak_failed", code=code, detail=self.last_lines(), log=self.log_path))
        if not self.report_path.is_file():
            raise GarakError(t("safety_garak_no_report", log=self.log_path, detail=self.last_lines()))
        return self.report_path

    def last_lines(self, n: int = 3) -> str:
        """The end of garak's output, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
        return " | ".join(lines[-n:])
