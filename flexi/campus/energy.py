"""`GET /admin/energy`: energy, cost and CO2 per day, week, model and course, from the stored hourly
aggregates of every replica (flexi/energy/report.py; the same figures as `flexi energy` and the dashboard)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from flexi.campus.admin_common import AdminRoute, require_admin
from flexi.db.models import utcnow
from flexi.energy.report import Prices, energy_report, parse_groups, window
from flexi.engine.types import BadRequest
from flexi.http.app_state import access_of, state_of

log = logging.getLogger("flexi.energy")
router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, dependencies=[Depends(require_admin)])


async def current_report(request: Request, days: int | None, start: str | None, end: str | None,
                         by: str | None) -> dict[str, Any]:
    """The report for the request's window and grouping, with this replica's not yet stored figures."""
    try:
        since, until = window(days, start, end, utcnow())
        groups = parse_groups(by)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    state = state_of(request)
    if state.energy is not None:
        try:
            await state.energy.bring_up_to_date()  # up to now, not only what the periodic flush wrote
        except Exception:  # noqa: BLE001 (the stored figures are still worth reporting)
            log.warning("storing the latest energy figures failed", exc_info=True)
    settings = state.settings
    prices = Prices(settings.energy_price, settings.energy_co2)

    def query() -> dict[str, Any]:
        session: Session
        with access_of(request).sessions() as session:
            return energy_report(session, since, until, groups, prices)

    report = await asyncio.to_thread(query)
    report["sampling"] = state.energy is not None
    return report


@router.get("/energy", summary="Energy (kWh), cost (€) and CO2 per day, week, model and course")
async def energy(request: Request, days: int | None = None, start: str | None = Query(None, alias="from", max_length=40),
                 end: str | None = Query(None, alias="to", max_length=40),
                 by: str | None = Query(None, max_length=40)) -> dict[str, Any]:
    return await current_report(request, days, start, end, by)
