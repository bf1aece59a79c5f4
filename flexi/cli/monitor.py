"""`flexi monitor checkmk`: Flexi's health as Checkmk local checks, for the agent's `local/` directory.

    # /usr/lib/check_mk_agent/local/flexi  (chmod 755)
    #!/bin/sh
    FLEXI_HOST=https://llm.uni.example FLEXI_API_KEY=flx_… exec /opt/flexi/bin/flexi monitor checkmk

The key needs scope `admin` (it reads /metrics). The previous sample is kept in `--state` so rates and
percentiles cover the interval between two checks. Always exits 0: an unreachable server is a CRIT line,
which is how Checkmk expects a local check to report it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from flexi.cli.client import Client, CLIError
from flexi.observability.checkmk import Thresholds, checks, render, sample, unreachable

monitor_app = typer.Typer(help="Flexi's health for monitoring systems.", no_args_is_help=True)


def _default_state() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flexi" / "checkmk-state.json"


@monitor_app.command("checkmk")
def checkmk(state: Path = typer.Option(None, "--state", help="Where the previous sample is kept (default ~/.cache/flexi)."),
            queue_warn: float = typer.Option(10, help="Waiting requests for WARN."),
            queue_crit: float = typer.Option(50, help="Waiting requests for CRIT."),
            error_warn: float = typer.Option(5.0, help="Percent failed requests for WARN."),
            error_crit: float = typer.Option(20.0, help="Percent failed requests for CRIT."),
            latency_warn: float = typer.Option(30.0, help="p95 request seconds for WARN."),
            latency_crit: float = typer.Option(120.0, help="p95 request seconds for CRIT."),
            gpu_util_warn: float = typer.Option(90.0, help="Percent GPU utilisation for WARN."),
            gpu_util_crit: float = typer.Option(98.0, help="Percent GPU utilisation for CRIT."),
            gpu_memory_warn: float = typer.Option(90.0, help="Percent GPU memory in use for WARN."),
            gpu_memory_crit: float = typer.Option(95.0, help="Percent GPU memory in use for CRIT.")) -> None:
    """Print Checkmk local checks: queue, errors, latency, loaded models, and each GPU's utilisation and memory."""
    path = state or _default_state()
    try:
        with Client() as client:
            now = sample(client.text("/metrics"))
    except CLIError as exc:
        typer.echo(render(unreachable(exc.message)), nl=False)
        return
    try:
        before = json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        before = None  # a damaged state file: report since the server started
    limits = Thresholds(queue_warn, queue_crit, error_warn, error_crit, latency_warn, latency_crit,
                        gpu_util_warn, gpu_util_crit, gpu_memory_warn, gpu_memory_crit)
    typer.echo(render(checks(now, before, limits)), nl=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(now))
    except OSError:
        pass  # a read-only home only loses the interval: the next run reports since the start again
