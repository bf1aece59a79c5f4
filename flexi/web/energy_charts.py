"""`GET /admin/energy/chart.svg`: the admin dashboard's energy charts, as server-rendered SVG like the usage
charts (flexi/web/charts.py): energy per day and per week (trends), per model, and the peak of concurrent
requests per hour of the day. Drawn from the stored hourly aggregates (the same report as /admin/energy)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flexi.campus.energy import current_report
from flexi.engine.types import BadRequest
from flexi.http.app_state import access_of
from flexi.http.locale import locale_of
from flexi.web.charts import bar_chart

router = APIRouter(include_in_schema=False)

_TITLES = {
    "day": ("Energy per day", "Energie pro Tag"),
    "week": ("Energy per week", "Energie pro Woche"),
    "model": ("Energy per model", "Energie pro Modell"),
    "course": ("Energy per course", "Energie pro Kurs"),
    "hour": ("Peak concurrent requests per hour of day (UTC)", "Höchste Zahl gleichzeitiger Anfragen je Tagesstunde (UTC)"),
}


def _energy_bars(report: dict[str, Any], view: str, locale: str) -> tuple[list[str], list[float], str]:
    rows = report["rows"]
    if view in ("model", "course"):
        rows = sorted(rows, key=lambda r: -r["kwh"])[:20]
    labels = [str(r[view]) if r[view] is not None else ("(ohne Kurs)" if locale == "de" else "(no course)") for r in rows]
    kwh = [float(r["kwh"]) for r in rows]
    if max(kwh, default=0.0) < 1.0:  # a laptop's day is a few Wh: keep the axis readable
        return labels, [v * 1000 for v in kwh], "Wh"
    return labels, kwh, "kWh"


@router.get("/admin/energy/chart.svg")
async def energy_chart(request: Request, view: Literal["day", "week", "model", "course", "hour"] = "day",
                       days: int = 30, lang: Literal["de", "en"] | None = None) -> Response:
    if not 1 <= days <= 400:
        raise BadRequest("days must be between 1 and 400", param="days")
    locale = lang or locale_of(request, default=access_of(request).settings.default_locale)
    report = await current_report(request, days, None, None, "model" if view == "hour" else view)
    if view == "hour":
        peak = [0.0] * 24
        for p in report["peaks"]:
            hour = int(p["hour"][11:13])
            peak[hour] = max(peak[hour], float(p["peak"]))
        labels, values, unit = [f"{h:02d}" for h in range(24)], peak, ""
    else:
        labels, values, unit = _energy_bars(report, view, locale)
    title = _TITLES[view][1 if locale == "de" else 0] + (f", {unit}" if unit else "")
    title += f" ({days} {'Tage' if locale == 'de' else 'days'})"
    return Response(bar_chart(title, labels, values, locale=locale), media_type="image/svg+xml",
                    headers={"Cache-Control": "no-store"})
