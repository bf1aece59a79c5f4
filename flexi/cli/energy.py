"""`flexi energy`: energy (kWh), cost (€) and CO2 per day, week, model or course, from the stored hourly
aggregates of every replica, directly on the state database like `flexi usage` (no server needed).

A running server writes its figures every FLEXI_ENERGY_FLUSH_INTERVAL seconds and at shutdown; GET
/admin/energy also includes the last minutes. Texts: `flexi.i18n.energy`.
"""

from __future__ import annotations

from typing import Optional

import typer

from flexi.cli.admin import JSON_OPTION, CommandError, database, emit, handle
from flexi.i18n import env_locale, t

energy_app = typer.Typer(help="Energy, cost and CO2 per day, week, model or course (stored hourly aggregates).",
                         no_args_is_help=False)


def _number(value: float, digits: int) -> str:
    text = f"{value:,.{digits}f}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".") if env_locale() == "de" else text


@energy_app.callback(invoke_without_command=True)
@handle
def energy(days: Optional[int] = typer.Option(None, "--days", help="The last N days (default 30)."),
           start: Optional[str] = typer.Option(None, "--from", help="From this UTC date (2026-11-01) or date-time."),
           end: Optional[str] = typer.Option(None, "--to", help="Up to and including this UTC date."),
           by: str = typer.Option("day", "--by", help="day | week | model | course (comma separated for several)."),
           as_json: bool = JSON_OPTION) -> None:
    """Energy, cost and CO2 (estimated figures are marked)."""
    from flexi.db.models import utcnow
    from flexi.energy.report import Prices, energy_report, parse_groups, window

    try:
        since, until = window(days, start, end, utcnow())
        groups = parse_groups(by)
    except ValueError as exc:
        raise CommandError(t("energy_bad_by") if "grouping" in str(exc) else str(exc)) from None
    with database() as s:
        settings = s.info["settings"]
        report = energy_report(s, since, until, groups, Prices(settings.energy_price, settings.energy_co2))
    if as_json:
        emit(report, True)
        return
    if not report["rows"]:
        typer.echo(t("energy_none"))
        return
    headers = [t(f"energy_col_{g}") for g in groups] + [t("energy_col_kwh"), t("energy_col_eur"), t("energy_col_co2"),
                                                          t("energy_col_estimated"), t("energy_col_busy")]
    rows = [[_label(g, r[g]) for g in groups] + [_number(r["kwh"], 3), _number(r["eur"], 2), _number(r["kg_co2"], 3),
                                                  _number(r["estimated_kwh"], 3), _number(r["busy_seconds"] / 3600, 2)]
            for r in report["rows"]]
    emit(report, False, headers, rows)
    total = report["total"]
    typer.echo(t("energy_total", kwh=_number(total["kwh"], 3), eur=_number(total["eur"], 2),
                 co2=_number(total["kg_co2"], 3), since=report["from"][:16].replace("T", " "),
                 until=report["to"][:16].replace("T", " "), price=_number(report["price_eur_per_kwh"], 2),
                 factor=_number(report["co2_g_per_kwh"], 0)))
    if total["estimated_kwh"]:
        typer.echo(t("energy_estimated_note", kwh=_number(total["estimated_kwh"], 3)))


def _label(group: str, value: object) -> str:
    if group == "model" and value == "idle":
        return t("energy_idle")
    if group == "course" and value is None:
        return t("energy_no_course")
    return str(value)
