"""Helpers shared by the benchmarks: machine description, result files, a server to measure."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import llama_cpp

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 1024**3, 1), "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__, "os": platform.platform(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_results(name: str, data: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class FlexiServer:
    """A real `flexi serve` on a free port with a throwaway FLEXI_HOME."""

    def __init__(self, port: int = 11499, env: dict[str, str] | None = None, cwd: str | None = None,
                 python_args: tuple[str, ...] = ()) -> None:
        """`cwd`: where `python -m flexi` starts; it puts that directory first on the path (with PYTHONPATH in
        `env`, this serves another checkout). `python_args`: put before `-m flexi`, e.g. a profiler."""
        self.home = tempfile.mkdtemp(prefix="flexi-bench-")
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "FLEXI_HOME": self.home, "FLEXI_HOST": f"127.0.0.1:{port}", **(env or {})}
        self.cwd = cwd
        self.python_args = python_args
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "FlexiServer":
        self.proc = subprocess.Popen([sys.executable, *self.python_args, "-m", "flexi", "serve"], env=self.env,
                                     cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/api/version", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("flexi serve did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(15)


def cpu_busy_fraction(seconds: float = 2.0) -> float:
    """Share of all CPU time spent busy over the next `seconds` (from /proc/stat; 0.0 where unavailable)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total > 0 else 0.0


def wait_for_quiet_cpu(max_busy: float = 0.15, timeout: float = 300.0) -> float:
    """Wait until other processes leave the CPU mostly idle (busy ≤ max_busy); return the last busy share.

    Benchmarks on a shared machine call this before each measurement; after `timeout` seconds they go
    ahead anyway and the caller records the figure, so disturbed runs can be recognised.
    """
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        busy = cpu_busy_fraction()
        if busy <= max_busy or time.monotonic() > deadline:
            return busy
        if not warned:
            print(f"  waiting for the CPU to be quiet (currently {busy:.0%} busy) ...", file=sys.stderr, flush=True)
            warned = True
