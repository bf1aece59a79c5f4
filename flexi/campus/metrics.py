"""`GET /metrics`: Prometheus' text exposition of Flexi's metrics (flexi.observability.metrics).

The access middleware treats it like `/admin` (it shows every model and course's traffic): admins only
when authentication is on (a scraper's key needs scope `admin`), open with auth=off on loopback.
Without FLEXI_METRICS the route does not exist (404).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from flexi.campus.admin_common import require_admin
from flexi.engine.types import EngineError
from flexi.http.app_state import state_of
from flexi.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"], dependencies=[Depends(require_admin)])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)")
async def metrics(request: Request) -> Response:
    """On the event loop, like the scheduler whose queues it reads (a snapshot without locks)."""
    collected = state_of(request).metrics
    if collected is None:  # the app was built without them (never with FLEXI_METRICS on)
        raise EngineError("metrics are switched off (FLEXI_METRICS)", 404, "not_found")
    return Response(collected.exposition(), media_type=CONTENT_TYPE)
