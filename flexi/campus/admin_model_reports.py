"""`/admin/model-reports`: measurements stored with the model they measured (`flexi … --save` posts here).

A report of `flexi bench|eval|safety|quant-report` holds one result per model; each is stored with the
model's current digest (`flexi.access.admin_ops.model_reports`), so the model picker, the admin models
tab and `flexi select` show figures of exactly the file that is installed. A result for a model this
server does not have is refused (404) before anything is stored.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from flexi.access import admin_ops as ops
from flexi.campus.admin_common import AdminRoute, require_admin, transaction
from flexi.engine.types import ModelNotFound
from flexi.http.app_state import generation_of
from flexi.http.caller import caller_of

router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, dependencies=[Depends(require_admin)])

MAX_RESULTS = 64


class ModelResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200, description="The model this result measured.")


class ReportUpload(BaseModel):
    """A report file as the measuring commands write it (`tool`, shared context, `results` per model)."""

    model_config = ConfigDict(extra="allow")
    tool: str = Field(min_length=1, max_length=64, description='"flexi bench", "flexi eval", "flexi safety" or '
                                                               '"flexi quant-report".')
    results: list[ModelResult] = Field(min_length=1, max_length=MAX_RESULTS)


@router.post("/model-reports", status_code=201, summary="Store a measuring tool's report with the models it measured")
async def save_reports(request: Request, body: ReportUpload) -> dict[str, Any]:
    caller, generation = caller_of(request), generation_of(request)
    digests: dict[str, tuple[str, str]] = {}
    for result in body.results:
        record = await asyncio.to_thread(generation.stored_model, result.model)
        if record is None:
            raise ModelNotFound(result.model)
        digests[result.model] = (record.name, record.digest)
    context = body.model_dump(exclude={"results"})

    def store() -> list[dict[str, Any]]:
        with transaction(request, caller.locale) as session:
            saved = []
            for result in body.results:
                name, digest = digests[result.model]
                saved.append(ops.save_model_report(
                    session, model=name, digest=digest, tool=body.tool, result=result.model_dump(), context=context,
                    created_by=caller.principal.user_id).view())
            return saved

    return {"saved": await asyncio.to_thread(store)}


@router.get("/model-reports", summary="List stored model reports, newest first")
async def list_reports(request: Request,
                       model: Annotated[str | None, Query(max_length=200)] = None,
                       kind: Annotated[str | None, Query(pattern="^(bench|eval|safety|quant)$")] = None,
                       latest: Annotated[bool, Query(description="Only the newest report per model and kind, "
                                                                 "for the installed file.")] = False,
                       full: Annotated[bool, Query(description="Include each report's full result.")] = False,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    generation = generation_of(request)

    def read() -> list[dict[str, Any]]:
        with transaction(request, caller_of(request).locale) as session:
            if not latest:
                stored = ops.list_model_reports(session, model=model, kind=kind, limit=limit)
                return [r.view(full) for r in stored]
            records = generation.with_remote(generation.store.list())
            digests = {r.name: r.digest for r in records if model is None or r.name == model}
            newest = ops.latest_model_reports(session, digests, with_report=full)
            return [r.view(full) for per_kind in newest.values() for k, r in sorted(per_kind.items())
                    if kind is None or k == kind]

    return {"reports": await asyncio.to_thread(read)}


@router.get("/model-reports/{report_id}", summary="One stored model report with its full result")
async def get_report(request: Request, report_id: int) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with transaction(request, caller_of(request).locale) as session:
            return ops.get_model_report(session, report_id).view(full=True)

    return await asyncio.to_thread(read)


@router.delete("/model-reports/{report_id}", status_code=204, summary="Delete a stored model report")
async def delete_report(request: Request, report_id: int) -> Response:
    def remove() -> None:
        with transaction(request, caller_of(request).locale) as session:
            ops.delete_model_report(session, report_id)

    await asyncio.to_thread(remove)
    return Response(status_code=204)
