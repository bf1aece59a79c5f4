"""`flexi loadtest`: check the options, run with a progress bar, write and print the results.

Exit codes: 0 when the run completed (failed requests are results, not failures of
the tool), 1 on bad arguments or an unreachable target, 130 on Ctrl-C.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from flexi.bench import report
from flexi.bench.clients import RequestRecord
from flexi.bench.loadtest import (
    BatchInfo,
    LoadTestConfig,
    LoadTestError,
    check_config,
    document,
    failed_count,
    normalize_url,
    parse_levels,
    probe_target,
    run_loadtest,
)
from flexi.i18n import t
from flexi.bench.prompts import PAPER_PROMPTS, PromptFileError, load_prompts


def build_config(*, url: str | None, api: str, model: str, prompts_file: Path | None, levels: str,
                 repetitions: int, max_tokens: int | None, temperature: float | None, ignore_eos: bool,
                 timeout: float, api_key: str | None, warmup: bool = True) -> LoadTestConfig:
    """A checked LoadTestConfig from raw CLI values; LoadTestError with a clear message otherwise."""
    api = api.strip().lower()
    config = LoadTestConfig(url="", api=api, model=model, levels=parse_levels(levels),  # type: ignore[arg-type]
                            repetitions=repetitions, max_tokens=max_tokens, temperature=temperature,
                            ignore_eos=ignore_eos, timeout=timeout, api_key=api_key or None, warmup=warmup)
    check_config(config)
    config.url = normalize_url(url, api)
    if prompts_file is not None:
        try:
            config.prompts = load_prompts(prompts_file)
        except PromptFileError as exc:
            raise LoadTestError(str(exc)) from None
    else:
        config.prompts = list(PAPER_PROMPTS)
    return config


def _error(message: str) -> None:
    typer.echo(t("error", message=message), err=True)


def _warn(message: str) -> None:
    typer.echo(t("warning", message=message), err=True)


def run_command(*, url: str | None = None, api: str = "ollama", model: str = "smollm2:135m",
                prompts_file: Path | None = None, levels: str = "1,10,30", repetitions: int = 1,
                max_tokens: int | None = None, temperature: float | None = None, ignore_eos: bool = False,
                timeout: float = 300.0, api_key: str | None = None, out: Path | None = None,
                chart: bool = True, warmup: bool = True) -> int:
    """Run `flexi loadtest`; returns the exit code."""
    try:
        config = build_config(url=url, api=api, model=model, prompts_file=prompts_file, levels=levels,
                              repetitions=repetitions, max_tokens=max_tokens, temperature=temperature,
                              ignore_eos=ignore_eos, timeout=timeout, api_key=api_key, warmup=warmup)
        server = asyncio.run(probe_target(config))
    except LoadTestError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        _error(t("interrupted"))
        return 130
    out_dir = out if out is not None else Path(f"loadtest-{datetime.now():%Y%m%d-%H%M%S}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _error(t("out_dir", path=out_dir, detail=exc.strerror or exc))
        return 1

    console = Console(stderr=True)
    console.print(t("target", url=config.url, api=config.api, model=config.model, prompts=len(config.prompts),
                    levels=",".join(map(str, config.levels)), reps=config.repetitions,
                    total=config.total_requests), highlight=False)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
    task = progress.add_task(t("warmup") if config.warmup else "", total=config.total_requests)

    def on_warmup(record: RequestRecord | None) -> None:
        if record is not None and not record.ok:
            progress.console.print(t("warning", message=t("warmup_failed", detail=record.error or record.status)),
                                   highlight=False, markup=False)

    def on_batch(batch: BatchInfo) -> None:
        progress.update(task, description=t("progress", prompt=batch.prompt_index + 1, prompts=len(config.prompts),
                                            level=batch.level, rep=batch.repetition + 1,
                                            reps=config.repetitions))

    def on_request(_record: RequestRecord) -> None:
        progress.advance(task)

    try:
        with progress:
            result = asyncio.run(run_loadtest(config, on_request=on_request, on_batch=on_batch, on_warmup=on_warmup,
                                              server=server))
    except LoadTestError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        _error(t("interrupted"))
        return 130

    doc = document(result)
    report.write_json(doc, out_dir / "results.json")
    summary = report.markdown(doc)
    (out_dir / "results.md").write_text(summary, encoding="utf-8")
    if chart:
        try:
            report.latency_chart(doc, out_dir / "latency.png")
        except ImportError:
            _warn(t("no_matplotlib"))
        except Exception as exc:  # noqa: BLE001  (a drawing problem must not lose the measured results)
            _warn(t("chart_failed", detail=exc))
    typer.echo(summary)
    failed = failed_count(result.records)
    if failed:
        _warn(t("failures", count=failed, total=len(result.records)))
    typer.echo(t("written", path=out_dir))
    return 0
