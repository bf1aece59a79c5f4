"""`flexi safety MODEL…`: NVIDIA's garak against models served by Flexi, pass rates per model and category.

garak runs in its own virtual environment (`--install` creates it; `--garak`/FLEXI_GARAK point elsewhere) and
talks only to the target server's OpenAI-compatible /v1; the probes, parsing and summary live in
`flexi.bench.safety`, the files in `flexi.bench.safety_report`. Exit codes like `flexi bench`: 0 when the run
completed (a model that could not be tested is a result), 1 on bad arguments, a missing garak or an unreachable
server, 130 on Ctrl-C.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from flexi.cli.measuring import output_dir
from flexi.cli.model_reports import SAVE_OPTION, save_after_run
from flexi.cli.ui import console, print_table
from flexi.i18n import t


def _fail(message: str) -> None:
    typer.echo(t("error", message=message), err=True)
    raise typer.Exit(1)


def _install(garak: Optional[str]) -> None:
    from flexi.bench.garak import (
        GARAK_VERSION,
        GarakError,
        default_venv,
        garak_version,
        install,
    )

    venv = Path(garak).expanduser() if garak else default_venv()
    typer.echo(t("safety_installing", version=GARAK_VERSION, venv=venv), err=True)
    try:
        python = install(venv)
        version = garak_version(python)
    except GarakError as exc:
        _fail(str(exc))
        return
    typer.echo(t("safety_installed", version=version, python=python), err=True)


def safety_command(
    models: Optional[List[str]] = typer.Argument(None, help="Models to probe."),
    probes: str = typer.Option("default", "--probes", help="quick, default, or garak probes (comma-separated, e.g. dan.DanInTheWild,encoding.InjectHex)."),
    prompt_cap: Optional[int] = typer.Option(None, "--prompt-cap", help="Prompts per probe at most (default: 2 for quick, 10 otherwise)."),
    max_tokens: int = typer.Option(100, "--max-tokens", help="Output tokens per answer at most."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory for safety.json, safety.md and garak's reports (default: safety-<timestamp>)."),
    as_json: bool = typer.Option(False, "--json", help="Print safety.json instead of the table."),
    url: Optional[str] = typer.Option(None, "--url", help="Server (default: FLEXI_HOST, else http://127.0.0.1:11434)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FLEXI_API_KEY", help="Sent as 'Authorization: Bearer KEY' (garak gets it through its environment)."),
    garak: Optional[str] = typer.Option(None, "--garak", envvar="FLEXI_GARAK", help="garak's virtual environment or Python (default: ~/.cache/flexi/garak-venv)."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds per model before garak is stopped."),
    save: bool = SAVE_OPTION,
    install_garak: bool = typer.Option(False, "--install", help="Install garak into its own virtual environment (--garak or the default) and exit."),
) -> None:
    """Probe models for jailbreaks, toxicity, encoding tricks, system-prompt leaks and injections with garak (nothing leaves this machine but requests to --url)."""
    if install_garak:
        _install(garak)
        return
    from flexi.bench import safety_report
    from flexi.bench.bench import target_url
    from flexi.bench.garak import GarakError, garak_version, resolve_python
    from flexi.bench.loadtest import LoadTestError
    from flexi.bench.report import write_json
    from flexi.bench.safety import SafetyConfig, SafetyError, run_safety, select_probes

    if not models:
        _fail(t("bench_no_models"))
        return
    try:
        for option, value in (("--max-tokens", max_tokens), ("--prompt-cap", prompt_cap or 1)):
            if value < 1:
                raise SafetyError(t("bad_positive", option=option, value=value))
        if not timeout > 0:
            raise SafetyError(t("bad_positive", option="--timeout", value=timeout))
        set_name, selected, cap = select_probes(probes, prompt_cap)
        config = SafetyConfig(url=target_url(url), models=list(models), probe_set=set_name, probes=selected,
                              prompt_cap=cap, python=resolve_python(garak), out_dir=Path("."),
                              api_key=api_key or None, max_tokens=max_tokens, timeout=timeout)
    except (SafetyError, LoadTestError) as exc:
        _fail(str(exc))
        return
    out_dir = output_dir(out, "safety")
    config.out_dir = out_dir.resolve()
    err = console(stderr=True)
    try:
        err.print(t("safety_target", version=garak_version(config.python), url=config.url,
                    models=", ".join(config.models), set=config.probe_set, count=len(config.probes),
                    cap=config.prompt_cap))
        doc = run_safety(config, lambda model: err.print(t("safety_progress", model=model)),
                         on_probe=lambda model, row: err.print(t(
                             "safety_probe_done", model=model, probe=row["probe"], passed=row["passed"],
                             total=row["total"], unanswered=row["unanswered"])))
    except (SafetyError, GarakError) as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:
        typer.echo(t("error", message=t("interrupted")), err=True)
        raise typer.Exit(130) from None
    write_json(doc, out_dir / "safety.json")
    (out_dir / "safety.md").write_text(safety_report.markdown(doc), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        rows = safety_report.rows(doc)
        keys = ["model", "overall", *safety_report.categories_of(doc), "error"]
        print_table([t(f"safety_col_{k}") for k in keys], [[r[k] for k in keys] for r in rows])
    failed = sum(1 for r in doc["results"] if r["status"] != "ok")
    if failed:
        typer.echo(t("warning", message=t("safety_failures", count=failed, total=len(doc["results"]))), err=True)
    typer.echo(t("written", path=out_dir), err=True)
    if save:
        save_after_run(doc, config.url, api_key or None)


def register(app: typer.Typer) -> None:
    """Add `safety` to the top-level `flexi` command."""
    app.command("safety")(safety_command)
