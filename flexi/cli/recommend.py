"""`flexi recommend [REPORTS…]`: which installed model for which use case, from the measured reports.

Named `recommend` rather than `select`: the command changes nothing (it does not pick a default model), it
only advises. Reads `flexi bench`/`eval`/`safety`/`quant-report` JSON files (or directories of them), adds
the catalogue and the memory planner from the local model store, and writes selection.json, selection.md
and pareto.svg. No server needed, nothing sent anywhere. The logic lives in `flexi.bench.selection*` and
`flexi.bench.pareto_svg`; texts in `flexi.i18n.selection`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer

from flexi.catalog import DIMENSIONS
from flexi.cli.errors import fail
from flexi.cli.ui import print_table
from flexi.i18n import env_locale, t

GIB = 1024**3
COLUMN_KEYS = ("model", "quality", "german", "speed", "memory", "energy", "safety", "openness", "pareto")


def recommend_command(
    paths: Optional[List[Path]] = typer.Argument(None, help="Report files or directories (scanned for *.json with a 'tool' field)."),
    bench: Optional[List[Path]] = typer.Option(None, "--bench", help="A flexi bench report (repeatable)."),
    eval_: Optional[List[Path]] = typer.Option(None, "--eval", help="A flexi eval report (repeatable)."),
    safety: Optional[List[Path]] = typer.Option(None, "--safety", help="A flexi safety report (repeatable)."),
    quant: Optional[List[Path]] = typer.Option(None, "--quant", help="A flexi quant-report report (repeatable)."),
    users: int = typer.Option(4, "--users", "-u", min=1, help="Concurrent users each use case must fit in memory."),
    mem: Optional[float] = typer.Option(None, "--mem", min=0.01, help="Memory budget in GiB (default: FLEXI_MAX_MEMORY of this host)."),
    gpu_name: Optional[str] = typer.Option(None, "--gpu", help="Budget of a GPU of the planner's table (a100-80gb, l40s, t4, …)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory for selection.json, selection.md and pareto.svg (default: selection-<timestamp>)."),
    as_json: bool = typer.Option(False, "--json", help="Print selection.json instead of the table."),
    stored: bool = typer.Option(False, "--stored", help="Also use the newest reports stored with the models on the "
                                                        "server (FLEXI_HOST, an admin key in FLEXI_API_KEY; see "
                                                        "`flexi reports`)."),
) -> None:
    """Recommend a model per use case (chat, course assistant, essay feedback, coding) from measured reports."""
    from flexi.bench import pareto_svg, selection_report
    from flexi.bench.report import write_json
    from flexi.bench.selection import USE_CASES, build_selection
    from flexi.bench.selection_inputs import (
        BENCH,
        EVAL,
        MEASURING_TOOLS,
        QUANT,
        SAFETY,
        installed_models,
        load_report_files,
        merge,
    )
    from flexi.config import load_settings
    from flexi.scheduler.capacity import GPUS, gpu

    if gpu_name and mem is not None:
        raise fail(t("select_bad_budget"))
    settings = load_settings()
    if gpu_name:
        device = gpu(gpu_name)
        if device is None:
            raise fail(t("select_unknown_gpu", name=gpu_name, known=", ".join(GPUS)))
        budget, label = device.memory, device.name
    elif mem is not None:
        budget, label = int(mem * GIB), "--mem"
    else:
        budget, label = settings.max_memory, "FLEXI_MAX_MEMORY"
    wanted = ([(p, None) for p in paths or []] + [(p, BENCH) for p in bench or []] + [(p, EVAL) for p in eval_ or []]
              + [(p, SAFETY) for p in safety or []] + [(p, QUANT) for p in quant or []])
    loaded = load_report_files(wanted)
    if stored:
        loaded.reports.extend(_stored())
    for key, values in loaded.problems:
        typer.echo(t("warning", message=t(key, **values)), err=True)
    if not any(r.tool in MEASURING_TOOLS for r in loaded.reports):
        raise fail(t("select_no_reports"))
    candidates = merge(loaded.reports, installed_models(settings.models_dir))
    doc = build_selection(candidates, users=users, budget=budget, budget_label=label, cases=USE_CASES)
    out_dir = out if out is not None else Path(f"selection-{datetime.now():%Y%m%d-%H%M%S}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(doc, out_dir / "selection.json")
        (out_dir / "selection.md").write_text(selection_report.markdown(doc), encoding="utf-8")
        (out_dir / "pareto.svg").write_text(pareto_svg.render(doc), encoding="utf-8")
    except OSError as exc:
        raise fail(t("out_dir", path=out_dir, detail=exc.strerror or exc)) from None
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _print(doc)
    typer.echo(t("select_written", path=out_dir), err=True)


def _stored() -> list:
    """The newest stored report of each kind per installed model, from the server."""
    from flexi.bench.selection_inputs import stored_reports
    from flexi.cli.client import CLIError, Client

    try:
        with Client() as client:
            entries = client.request("GET", "/admin/model-reports?latest=true&full=true")["reports"]
            return stored_reports(entries, client.base_url)
    except CLIError as exc:
        raise fail(str(exc)) from None


def _print(doc: dict) -> None:
    from flexi.bench.selection_report import cells

    locale = env_locale()
    missing, unknown = t("select_not_measured"), t("select_unknown")
    rows = []
    for result in doc["results"]:
        row = cells(result, missing, unknown)
        row["pareto"] = t("select_yes") if result["pareto"] else ""
        family = result["family"]
        if family:
            values = {"open": family["open_count"], "total": len(DIMENSIONS), "unknown": family["unknown_count"]}
            row["openness"] = t("catalog_score_unknown" if family["unknown_count"] else "catalog_score", **values)
        rows.append([row[k] for k in COLUMN_KEYS])
    print_table([t(f"select_col_{k}") for k in COLUMN_KEYS], rows)
    typer.echo("")
    for case_id, rec in doc["recommendations"].items():
        typer.echo(t("select_recommendation_line", use_case=t(f"select_case_{case_id}"), model=rec["model"] or t("select_none")))
        typer.echo("  " + rec["reason"][locale])
        for excluded in rec["excluded"]:
            typer.echo("  - " + excluded["reason"][locale])


def register(app: typer.Typer) -> None:
    """Add `recommend` to the top-level `flexi` command."""
    app.command("recommend")(recommend_command)
