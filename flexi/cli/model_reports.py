"""`flexi reports save|list|show|rm` and the `--save` of the measuring commands: reports stored with the model.

HTTP client of the server's `/admin/model-reports` (an admin key): each model's result of `flexi bench`,
`eval`, `safety` or `quant-report` is stored with the model file it measured, so the chat's model picker,
the admin models tab and `flexi select --stored` show it. Results of models that failed entirely (an
unknown model, every request failed) are not stored: an empty measurement is no measurement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import typer

from flexi.cli.client import Client
from flexi.cli.errors import handle_errors
from flexi.cli.ui import print_table
from flexi.i18n import t

reports_app = typer.Typer(help="Measurements stored with the models (flexi bench|eval|safety|quant-report): "
                               "store report files, list, show, remove.", no_args_is_help=True)

SAVE_OPTION = typer.Option(False, "--save", help="Also store each model's result with the model on the server "
                                                 "(admin key), so the model picker and catalogue show it.")
HEADERS = ["ID", "MODEL", "KIND", "SUMMARY", "CREATED"]
TOOLS = ("flexi bench", "flexi eval", "flexi safety", "flexi quant-report")


def measured(result: dict[str, Any]) -> bool:
    """Whether a model's result holds a measurement worth storing."""
    if result.get("error"):
        return False
    rows = result.get("rows")
    if isinstance(rows, list):  # flexi bench: at least one successful request
        return any(isinstance(r, dict) and r.get("ok") for r in rows)
    return True


def save_report(doc: dict[str, Any], url: str | None = None, api_key: str | None = None) -> list[dict[str, Any]]:
    """Store the measured models' results of one report on the server; the stored entries."""
    results = [r for r in doc.get("results") or [] if isinstance(r, dict) and measured(r)]
    if not results:
        typer.echo(t("warning", message=t("reports_nothing_to_save")), err=True)
        return []
    with Client(url, api_key=api_key) as client:
        saved = client.request("POST", "/admin/model-reports", {**doc, "results": results})["saved"]
        typer.echo(t("reports_saved", url=client.base_url, models=", ".join(s["model"] for s in saved)), err=True)
    return saved


def save_after_run(doc: dict[str, Any], url: str | None, api_key: str | None) -> None:
    """`--save` at the end of a measuring command: store the results, or exit 1 saying why not (the files
    are written already, so nothing measured is lost; `flexi reports save` can store them later)."""
    from flexi.cli.client import CLIError

    try:
        save_report(doc, url, api_key)
    except CLIError as exc:
        typer.echo(t("error", message=str(exc)), err=True)
        raise typer.Exit(1) from None


def _summary(summary: dict[str, Any]) -> str:
    parts = []
    for key, value in summary.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.3g}")
        elif value is not None and not isinstance(value, dict | list):
            parts.append(f"{key}={value}")
    return " ".join(parts)[:80]


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(t("reports_bad_file", path=path, detail=exc)) from None
    if not isinstance(doc, dict) or doc.get("tool") not in TOOLS or not isinstance(doc.get("results"), list):
        raise typer.BadParameter(t("reports_bad_file", path=path, detail="tool/results"))
    return doc


@reports_app.command("save")
@handle_errors
def save(files: list[Path] = typer.Argument(..., help="Report files (bench.json, eval.json, safety.json, quant.json)."),
         url: str | None = typer.Option(None, "--url", help="Server (default: FLEXI_HOST)."),
         api_key: str | None = typer.Option(None, "--api-key", envvar="FLEXI_API_KEY", help="An admin key.")) -> None:
    """Store report files written earlier with the models they measured."""
    docs = [_load(path) for path in files]  # all checked before anything is stored
    for doc in docs:
        save_report(doc, url, api_key)


@reports_app.command("list")
@handle_errors
def list_reports(model: str | None = typer.Option(None, "--model", help="Only this model."),
                 kind: str | None = typer.Option(None, "--kind", help="bench, eval, safety or quant."),
                 latest: bool = typer.Option(False, "--latest", help="Only the newest per model and kind, for the "
                                                                   "installed file."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List stored reports, newest first."""
    query = urlencode([(k, v) for k, v in (("model", model), ("kind", kind), ("latest", "true" if latest else None)) if v])
    with Client() as client:
        reports = client.request("GET", "/admin/model-reports" + (f"?{query}" if query else ""))["reports"]
    if as_json:
        typer.echo(json.dumps(reports, ensure_ascii=False, indent=2))
    elif not reports:
        typer.echo(t("reports_none"))
    else:
        print_table(HEADERS, [[str(r["id"]), r["model"], r["kind"], _summary(r["summary"]), r["created_at"][:16]]
                              for r in reports])


@reports_app.command("show")
@handle_errors
def show(report_id: int = typer.Argument(..., help="The report's id (flexi reports list).")) -> None:
    """Print one stored report with its full result (JSON)."""
    with Client() as client:
        typer.echo(json.dumps(client.request("GET", f"/admin/model-reports/{report_id}"), ensure_ascii=False, indent=2))


@reports_app.command("rm")
@handle_errors
def remove(report_id: int = typer.Argument(..., help="The report's id (flexi reports list).")) -> None:
    """Delete a stored report."""
    with Client() as client:
        client.request("DELETE", f"/admin/model-reports/{report_id}")
    typer.echo(t("reports_deleted", id=report_id))
