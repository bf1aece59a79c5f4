"""`flexi bench MODEL…`: speed, time to first token, memory and energy of models on this server.

Talks only to the target server (default FLEXI_HOST); the measuring lives in `flexi.bench.bench`, the
files in `flexi.bench.bench_report`. Exit codes like `flexi loadtest`: 0 when the run completed (failed
requests are results), 1 on bad arguments or an unreachable server, 130 on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import List, Optional

import typer

from flexi.cli.measuring import output_dir, run_measurement, write_report
from flexi.cli.model_reports import SAVE_OPTION, save_after_run
from flexi.cli.ui import console, print_table
from flexi.i18n import t

COLUMN_KEYS = ("model", "streams", "pp", "tg", "tg_total", "ttft", "memory", "energy", "errors")


def bench_command(
    models: List[str] = typer.Argument(..., help="Models to benchmark."),
    streams: str = typer.Option("1,4", "--streams", help="Concurrent streams, comma-separated."),
    prompt_tokens: int = typer.Option(512, "--prompt-tokens", help="Prompt length in tokens (about)."),
    output_tokens: int = typer.Option(128, "--output-tokens", help="Tokens to generate per request (end of sequence ignored)."),
    repeat: int = typer.Option(3, "--repeat", help="Batches per stream count."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory for bench.json and bench.md (default: bench-<timestamp>)."),
    as_json: bool = typer.Option(False, "--json", help="Print bench.json instead of the table."),
    url: Optional[str] = typer.Option(None, "--url", help="Server (default: FLEXI_HOST, else http://127.0.0.1:11434)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds per request before it counts as timed out."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FLEXI_API_KEY", help="Sent as 'Authorization: Bearer KEY'."),
    api: str = typer.Option("ollama", "--api", help="The server's dialect: ollama (/api/generate, exact server "
                                                      "timings) or openai (/v1/completions: llama-server, vLLM, …)."),
    ctx: Optional[int] = typer.Option(None, "--ctx", help="Context window per request (num_ctx; Ollama dialect), e.g. to measure "
                                                          "speed at the context a course assistant uses."),
    save: bool = SAVE_OPTION,
) -> None:
    """Measure prompt and generation tokens/s, time to first token, memory and energy per model (nothing leaves this machine)."""
    from flexi.bench import bench_report
    from flexi.bench.bench import (
        BenchConfig,
        check_config,
        parse_streams,
        run_bench,
        target_url,
    )
    from flexi.bench.loadtest import LoadTestError

    try:
        config = BenchConfig(url=target_url(url), models=list(models), streams=parse_streams(streams),
                             prompt_tokens=prompt_tokens, output_tokens=output_tokens, repeat=repeat,
                             timeout=timeout, api_key=api_key or None, api=api, ctx=ctx)
        check_config(config)
    except LoadTestError as exc:
        typer.echo(t("error", message=str(exc)), err=True)
        raise typer.Exit(1) from None
    out_dir = output_dir(out, "bench")
    err = console(stderr=True)
    err.print(t("bench_target", url=config.url, models=", ".join(config.models),
                streams=",".join(map(str, config.streams)), prompt=config.prompt_tokens,
                output=config.output_tokens, reps=config.repeat))

    def on_batch(model: str, n: int, rep: int) -> None:
        err.print(t("bench_progress", model=model, streams=n, rep=rep + 1, reps=config.repeat))

    doc = run_measurement(lambda: asyncio.run(run_bench(config, on_batch)), (LoadTestError,))
    write_report(doc, out_dir, "bench", bench_report.markdown(doc))
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        rows = bench_report.rows(doc, t("bench_not_measurable"))
        print_table([t(f"bench_col_{k}") for k in COLUMN_KEYS], [[r[k] for k in COLUMN_KEYS] for r in rows])
    total = sum(len(r["requests"]) for r in doc["results"])
    failed = sum(1 for r in doc["results"] for m in r["requests"] if m["status"] != "ok")
    if failed:
        typer.echo(t("warning", message=t("bench_failures", count=failed, total=total)), err=True)
    typer.echo(t("written", path=out_dir), err=True)
    if save:
        save_after_run(doc, config.url, config.api_key)


def register(app: typer.Typer) -> None:
    """Add `bench` to the top-level `flexi` command."""
    app.command("bench")(bench_command)
