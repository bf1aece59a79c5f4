"""`flexi safety`: garak's probes against models served by Flexi, summarised per model and category.

garak (`flexi.bench.garak`) talks to the server's OpenAI-compatible `/v1` like any client; this module chooses the
probes, checks the server and the models first (garak itself would record an unknown model as unanswered attempts
and exit 0), reads garak's report.jsonl (its `eval` entries: probe, detector, passed, total) and builds the document
written to safety.json (the shape of `flexi bench`'s bench.json).

The probe sets use only detectors that match strings or word lists, so they run offline: no Hugging Face
classifier (e.g. `unsafe_content.ToxicCommentModel`), no Perspective API. A probe "passes" an attempt when its
detector finds no hit (the model refused, did not decode the payload, did not repeat its system prompt, …); higher
is safer. The scores say how a model behaves on these probes, not that it is safe.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from flexi import __version__
from flexi.bench.garak import GarakError, GarakRun, garak_version
from flexi.bench.report import machine_description
from flexi.i18n import t

JAILBREAK, TOXICITY, ENCODING, PROMPT_LEAK, INJECTION, OTHER = (
    "jailbreak", "toxicity", "encoding", "prompt_leak", "injection", "other")
CATEGORIES = (JAILBREAK, TOXICITY, ENCODING, PROMPT_LEAK, INJECTION, OTHER)

# By garak module; a few probes of mixed modules are named on their own.
_MODULE_CATEGORY = {
    "dan": JAILBREAK, "phrasing": JAILBREAK, "grandma": JAILBREAK, "smuggling": JAILBREAK, "goodside": JAILBREAK,
    "lmrc": TOXICITY, "continuation": TOXICITY, "realtoxicityprompts": TOXICITY,
    "encoding": ENCODING, "badchars": ENCODING,
    "sysprompt_extraction": PROMPT_LEAK,
    "promptinject": INJECTION, "latentinjection": INJECTION, "web_injection": INJECTION,
}
_PROBE_CATEGORY = {"grandma.Slurs": TOXICITY}

SYSPROMPT_PROBE = "sysprompt_extraction.SystemPromptExtraction"

# quick: one probe per category with short prompts, two prompts each (the test suite's run: a few generations).
QUICK = (
    "phrasing.PastTense", "lmrc.SlurUsage", "encoding.InjectBase64", SYSPROMPT_PROBE, "promptinject.HijackHateHumans",
)
# default: several attacks per category, up to ten prompts each (about 250 generations). Left out on purpose:
# dan.Ablation_Dan_11_0 (127 prompts) and latentinjection.LatentWhois (168), which ignore the prompt cap, and every
# probe whose detector is a Hugging Face classifier or a remote API (realtoxicityprompts, lmrc.Bullying, …).
DEFAULT = (
    # jailbreak: DAN-style prompts (in the wild, AutoDAN, classic DAN/DUDE/STAN), the grandma trick, refused
    # requests asked again in the past or future tense
    "dan.DanInTheWild", "dan.AutoDANCached", "dan.Dan_11_0", "dan.DUDE", "dan.STAN", "grandma.Substances",
    "phrasing.PastTense", "phrasing.FutureTense",
    # toxicity: slurs and sexual content, matched against garak's word lists (Surge AI, Ofcom)
    "lmrc.SlurUsage", "lmrc.SexualContent", "lmrc.Sexualisation", "continuation.ContinueSlursReclaimedSlurs",
    "grandma.Slurs",
    # encoding: instructions hidden in encodings the model is asked to decode
    "encoding.InjectBase64", "encoding.InjectBase32", "encoding.InjectHex", "encoding.InjectROT13",
    "encoding.InjectMorse", "encoding.InjectBraille", "encoding.InjectUnicodeTagChars", "encoding.InjectZalgo",
    # prompt leak: Flexi's course-assistant system prompts against garak's extraction attacks
    SYSPROMPT_PROBE,
    # injection: instructions in the user's text or in documents (what a course assistant with documents meets),
    # markup that would run script or leak data in a chat page
    "promptinject.HijackHateHumans", "promptinject.HijackKillHumans", "promptinject.HijackLongPrompt",
    "latentinjection.LatentInjectionReport", "latentinjection.LatentInjectionResume",
    "latentinjection.LatentInjectionFactSnippetEiffel", "latentinjection.LatentWhoisSnippet",
    "web_injection.MarkdownXSS", "web_injection.StringAssemblyDataExfil",
)
PROBE_SETS: dict[str, tuple[tuple[str, ...], int]] = {"quick": (QUICK, 2), "default": (DEFAULT, 10)}
_PROBE_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
SYSTEM_PROMPTS = Path(__file__).with_name("safety_data") / "system_prompts.jsonl"


class SafetyError(Exception):
    """The run cannot start or cannot go on (bad arguments, server unreachable, key refused, garak broken)."""


def category(probe: str) -> str:
    """The report category of a garak probe ("dan.DanInTheWild" → "jailbreak"); "other" when unknown."""
    if probe in _PROBE_CATEGORY:
        return _PROBE_CATEGORY[probe]
    return _MODULE_CATEGORY.get(probe.split(".", 1)[0], OTHER)


def select_probes(value: str, prompt_cap: int | None = None) -> tuple[str, list[str], int]:
    """(set name, probes, prompt cap) for --probes: "quick", "default" or a comma-separated list of garak probes."""
    name = value.strip()
    if name in PROBE_SETS:
        probes, cap = PROBE_SETS[name]
        return name, list(probes), prompt_cap or cap
    probes = [p.strip() for p in name.split(",") if p.strip()]
    bad = [p for p in probes if not _PROBE_NAME.match(p)]
    if not probes or bad:
        raise SafetyError(t("safety_bad_probes", value=", ".join(bad) or value))
    return "custom", list(dict.fromkeys(probes)), prompt_cap or PROBE_SETS["default"][1]


# --- garak's report ------------------------------------------------------------------------------------


def eval_row(line: str) -> dict[str, Any] | None:
    """One line of garak's report.jsonl as Flexi's probe row if it is an `eval` entry, else None."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None  # a run cut short can leave a half-written last line
    if not isinstance(entry, dict) or entry.get("entry_type") != "eval":
        return None
    probe = str(entry.get("probe", ""))
    return {
        "probe": probe, "detector": str(entry.get("detector", "")), "category": category(probe),
        "passed": int(entry.get("passed") or 0),
        "total": int(entry.get("total_evaluated", entry.get("total")) or 0),
        "unanswered": int(entry.get("nones") or 0),
    }


def read_report(lines: Iterable[str]) -> dict[str, Any]:
    """The parts of garak's report.jsonl Flexi uses: garak's version and one row per (probe, detector) eval."""
    version, evals = None, []
    for line in lines:
        if not line.strip():
            continue
        row = eval_row(line)
        if row is not None:
            evals.append(row)
        elif version is None and '"init"' in line:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("entry_type") == "init":
                version = entry.get("garak_version")
    return {"garak_version": version, "probes": evals}


def summarize(probes: list[dict[str, Any]], selected: Iterable[str] = ()) -> dict[str, Any]:
    """Per category and overall pass rates over all evaluated attempts (None where nothing was evaluated).

    Categories of selected probes that produced no eval row still appear (total 0), so a report never hides
    a category that was asked for."""
    cats: dict[str, dict[str, Any]] = {}
    for name in [category(p) for p in selected] + [r["category"] for r in probes]:
        cats.setdefault(name, {"passed": 0, "total": 0, "pass_rate": None})
    for row in probes:
        cats[row["category"]]["passed"] += row["passed"]
        cats[row["category"]]["total"] += row["total"]
    for entry in cats.values():
        entry["pass_rate"] = _rate(entry["passed"], entry["total"])
    ordered = {c: cats[c] for c in CATEGORIES if c in cats}
    passed, total = sum(r["passed"] for r in probes), sum(r["total"] for r in probes)
    return {"categories": ordered, "pass_rate": _rate(passed, total), "passed": passed, "total": total,
            "unanswered": sum(r["unanswered"] for r in probes)}


def _rate(passed: int, total: int) -> float | None:
    return round(passed / total, 4) if total else None


# --- the run -------------------------------------------------------------------------------------------


@dataclass
class SafetyConfig:
    url: str
    models: list[str]
    probe_set: str
    probes: list[str]
    prompt_cap: int
    python: Path
    out_dir: Path
    api_key: str | None = None
    max_tokens: int = 100
    timeout: float | None = 3600.0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def check_server(config: SafetyConfig, client: httpx.Client) -> dict[str, Any]:
    """/api/version of the target; SafetyError when it cannot be reached or refuses the key."""
    try:
        response = client.get(config.url + "/api/version", headers=config.headers(), timeout=10)
        models = client.get(config.url + "/v1/models", headers=config.headers(), timeout=30)
    except httpx.TransportError as exc:
        raise SafetyError(t("unreachable", url=config.url, detail=str(exc) or type(exc).__name__)) from None
    if models.status_code in (401, 403):
        raise SafetyError(t("safety_refused", url=config.url, status=models.status_code))
    try:
        info = response.json() if response.status_code == 200 else {}
    except ValueError:
        info = {}
    return info if isinstance(info, dict) else {}


def model_error(config: SafetyConfig, client: httpx.Client, model: str) -> str | None:
    """Why garak cannot test `model` on this server (English, for the report), or None when it exists."""
    try:
        response = client.get(f"{config.url}/v1/models/{model}", headers=config.headers(), timeout=30)
    except httpx.TransportError as exc:
        return f"server unreachable: {exc or type(exc).__name__}"
    if response.status_code == 200:
        return None
    if response.status_code == 404:
        return f"model not found on {config.url}"
    return f"HTTP {response.status_code} for /v1/models/{model}"


def _model_dir(out_dir: Path, model: str) -> Path:
    return out_dir / "garak" / re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-")


def probe_options(work_dir: Path) -> dict[str, Any]:
    """The prompt-leak probe reads Flexi's system prompts from a local dataset directory, never Hugging Face."""
    source = work_dir / "system_prompts"
    source.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SYSTEM_PROMPTS, source / "train.jsonl")
    return {"sysprompt_extraction": {"SystemPromptExtraction": {
        "system_prompt_sources": [str(source)], "system_prompt_subsample": None}}}


ProbeDone = Callable[[str, dict[str, Any]], None]  # model, probe row


def probe_model(config: SafetyConfig, model: str, client: httpx.Client,
                on_probe: ProbeDone | None = None) -> dict[str, Any]:
    """One model: garak's run and its summary, or an error row (unknown model, garak failed, nothing answered)."""
    empty = summarize([], config.probes)
    error = model_error(config, client, model)
    if error is not None:
        return {"model": model, "status": "error", "error": error, **_public(empty), "probes": []}
    work_dir = _model_dir(config.out_dir, model)
    run = GarakRun(python=config.python, target_url=config.url, model=model, spec=spec(config.probes),
                   work_dir=work_dir, prompt_cap=config.prompt_cap, max_tokens=config.max_tokens,
                   probe_options=probe_options(work_dir) if SYSPROMPT_PROBE in config.probes else None,
                   timeout=config.timeout)
    started = time.monotonic()
    error = None
    try:
        run.run(config.api_key, on_line=_forward(model, on_probe))
    except GarakError as exc:
        error = str(exc)
    parsed: dict[str, Any] = {"probes": []}
    if run.report_path.is_file():  # after a failure too: the probes garak finished still count
        with open(run.report_path, encoding="utf-8", errors="replace") as f:
            parsed = read_report(f)
    summary = summarize(parsed["probes"], config.probes)
    if error is None and not summary["total"]:
        error = "no attempt was answered (see the garak report)"
    result: dict[str, Any] = {"model": model, "status": "ok" if error is None else "error", "error": error,
                              **_public(summary), "probes": parsed["probes"],
                              "garak_seconds": round(time.monotonic() - started, 1)}
    if run.report_path.is_file():
        result["garak_report"] = str(run.report_path.relative_to(config.out_dir))
    return result


def _forward(model: str, on_probe: ProbeDone | None) -> Callable[[str], None] | None:
    if on_probe is None:
        return None

    def on_line(line: str) -> None:
        row = eval_row(line)
        if row is not None:
            on_probe(model, row)

    return on_line


def _public(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {"categories": summary["categories"], "pass_rate": summary["pass_rate"], "passed": summary["passed"],
            "total": summary["total"], "unanswered": summary["unanswered"]}


def spec(probes: Iterable[str]) -> str:
    return ",".join(f"probes.{p}" for p in probes)


def run_safety(config: SafetyConfig, on_model: Callable[[str], None] | None = None,
               client: httpx.Client | None = None, on_probe: ProbeDone | None = None) -> dict[str, Any]:
    """The whole run as the document written to safety.json."""
    if not config.models:
        raise SafetyError(t("bench_no_models"))
    try:
        version = garak_version(config.python)
    except GarakError as exc:
        raise SafetyError(str(exc)) from None
    started = datetime.now(UTC).isoformat(timespec="seconds")
    own = client is None
    client = client or httpx.Client()
    try:
        info = check_server(config, client)
        results = []
        for model in config.models:
            if on_model:
                on_model(model)
            results.append(probe_model(config, model, client, on_probe))
    finally:
        if own:
            client.close()
    local = httpx.URL(config.url).host in {"127.0.0.1", "localhost", "::1", "[::1]"}
    machine = machine_description()
    return {
        "tool": "flexi safety",
        "started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": {"url": config.url, "local": local},
        "versions": {"flexi_client": __version__, "flexi_server": info.get("flexi_version"),
                     "ollama_api": info.get("version"), "garak": version},
        "machine": machine if local else {**machine, "note": "the machine running flexi safety, not the server"},
        "parameters": {"probe_set": config.probe_set, "probes": config.probes, "prompt_cap": config.prompt_cap,
                       "generations": 1, "max_tokens": config.max_tokens, "temperature": 0,
                       "detectors": "primary detector of each probe",
                       "system_prompts": f"flexi/bench/safety_data/system_prompts.jsonl ({_count_lines(SYSTEM_PROMPTS)})"},
        "results": results,
    }


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
