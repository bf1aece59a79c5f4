"""`flexi eval MODEL…`: quality benchmarks (lm-evaluation-harness) of models on this server, next to tokens/s.

Talks only to the target server (default FLEXI_HOST); the run lives in `flexi.eval.run`, the files in
`flexi.eval.report`. Exit codes like `flexi bench`: 0 when the run completed (a failed task is a result,
with a warning), 1 on bad arguments, an unreachable server, an unknown model or task, or lm-eval missing;
130 on Ctrl-C.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from flexi.cli.measuring import output_dir, run_measurement, write_report
from flexi.cli.model_reports import SAVE_OPTION, save_after_run
from flexi.cli.ui import console, print_table
from flexi.i18n import t


def _tasks(value: str | None) -> list[str]:
    from flexi.eval.tasks import SHIPPED

    if value is None:
        return list(SHIPPED)
    return [name.strip() for name in value.split(",") if name.strip()]


def eval_command(
    models: list[str] = typer.Argument(..., help="Models to evaluate."),
    tasks: str | None = typer.Option(None, "--tasks", help="Comma-separated lm-eval task names (default: the shipped offline set flexi_truthfulqa_mc,flexi_gsm8k,flexi_mgsm_de)."),
    limit: int | None = typer.Option(None, "--limit", help="At most N items per task (default: all)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Cap on generated tokens per answer in generative tasks (default: the task's own)."),
    concurrent: int = typer.Option(1, "--concurrent", help="Requests in flight at once (the server batches them; 1 keeps greedy answers exactly reproducible)."),
    speed_tokens: int = typer.Option(64, "--speed-tokens", help="Output tokens of each of the two tokens/s measurements (0: none)."),
    out: Path | None = typer.Option(None, "--out", help="Output directory for eval.json and eval.md (default: eval-<timestamp>)."),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json instead of the table."),
    url: str | None = typer.Option(None, "--url", help="Server (default: FLEXI_HOST, else http://127.0.0.1:11434)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds per request."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="FLEXI_API_KEY", help="Sent as 'Authorization: Bearer KEY'."),
    save: bool = SAVE_OPTION,
    allow_download: bool = typer.Option(False, "--allow-download", help="Let lm-eval download datasets of its standard "
                                                                      "tasks from Hugging Face (default: offline; the "
                                                                      "shipped flexi_* tasks need nothing)."),
) -> None:
    """Score models on quality benchmarks through the server's OpenAI API, with tokens/s (nothing leaves this machine)."""
    from flexi.bench.bench import target_url
    from flexi.bench.loadtest import LoadTestError
    from flexi.eval import report
    from flexi.eval.errors import EvalError
    from flexi.eval.run import EvalConfig, check_config, run_eval

    try:
        config = EvalConfig(url=target_url(url), models=list(models), tasks=_tasks(tasks), limit=limit,
                            max_tokens=max_tokens, concurrent=concurrent, speed_tokens=speed_tokens,
                            timeout=timeout, api_key=api_key or None)
        check_config(config)
    except (EvalError, LoadTestError) as exc:
        typer.echo(t("error", message=str(exc)), err=True)
        raise typer.Exit(1) from None
    out_dir = output_dir(out, "eval")
    err = console(stderr=True)
    err.print(t("eval_target", url=config.url, models=", ".join(config.models), tasks=", ".join(config.tasks),
                limit=t("eval_limit", limit=config.limit) if config.limit else ""))

    def on_task(model: str, task: str) -> None:
        err.print(t("eval_progress_task", model=model, task=task) if task else t("eval_progress_speed", model=model))

    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's progress bars; our own lines say what runs
    if not allow_download:  # nothing leaves this machine unless asked: lm-eval's standard tasks fetch from the hub
        for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
            os.environ[name] = "1"
    doc = run_measurement(lambda: run_eval(config, on_task), (EvalError,))
    write_report(doc, out_dir, "eval", report.markdown(doc))
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        names = report.task_names(doc)
        keys = ["average", "average_de", "tokens_per_s", "errors"]
        print_table([t("eval_col_model"), *names, *(t(f"eval_col_{k}") for k in keys)],
                    [[r["model"], *(r[n] for n in names), *(r[k] for k in keys)] for r in report.rows(doc)])
    for result in doc["results"]:
        for task, message in (result.get("errors") or {}).items():
            typer.echo(t("warning", message=t("eval_task_failed", model=result["model"], task=task, message=message)),
                       err=True)
    typer.echo(t("written", path=out_dir), err=True)
    if save:
        save_after_run(doc, config.url, api_key or None)


def register(app: typer.Typer) -> None:
    """Add `eval` to the top-level `flexi` command."""
    app.command("eval")(eval_command)
