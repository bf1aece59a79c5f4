"""Admin views of usage and the privacy operations: `/admin/usage`, `/admin/privacy/…`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from flexi.access import admin_ops as ops
from flexi.access.end_user_privacy import MAX_END_USER_CHARS, end_user_pseudonym, erase_end_user, export_end_user
from flexi.access.privacy import erase_user, export_user
from flexi.access.report import processing_report
from flexi.access.usage_queries import usage_summary
from flexi.campus.admin_common import AdminRoute, require_admin, transaction
from flexi.http.app_state import access_of
from flexi.engine.types import BadRequest, EngineError
from flexi.db.models import User

router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, dependencies=[Depends(require_admin)])


def _text_filter(value: str | None, name: str) -> str | None:
    if value is not None and (len(value) > 255 or any(ord(c) < 32 for c in value)):
        raise BadRequest(f"invalid value for \"{name}\"", param=name)
    return value


@router.get("/usage", summary="Usage totals grouped by user (pseudonym), course, model, key, day, end user or prompt template")
def usage(request: Request, by: Literal["user", "course", "model", "key", "day", "end_user", "template"] = "day",
          since: datetime | None = None, until: datetime | None = None, model: str | None = None,
          course: str | None = None, key_id: int | None = None, limit: int = 1000) -> dict[str, Any]:
    """`by=end_user&key_id=…`: a service key's usage per end user (OpenAI `user`), by pseudonym only."""
    if not 1 <= limit <= 10000:
        raise BadRequest("limit must be between 1 and 10000", param="limit")
    if key_id is not None and not 1 <= key_id <= 2**31 - 1:
        raise BadRequest("key_id must be a key's id", param="key_id")
    with transaction(request) as s:
        rows = usage_summary(s, by, since=since, until=until, model=_text_filter(model, "model"),
                             course=_text_filter(course, "course"), key_id=key_id, limit=limit)
    return {"by": by, "rows": rows}


def _user_id(user_id: int) -> int:
    if not 1 <= user_id <= 2**31 - 1:
        raise EngineError("no such user", 404, "not_found")
    return user_id


@router.get("/privacy/export/{user_id}", summary="Everything stored about one user (GDPR Art. 15)")
def export(request: Request, user_id: int) -> Response:
    with transaction(request) as s:
        data = export_user(s, _user_id(user_id), access_of(request).settings)
    if data is None:
        raise EngineError("no such user", 404, "not_found")
    return Response(json.dumps(data, ensure_ascii=False, indent=2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="flexi-export-{user_id}.json"'})


@router.delete("/privacy/users/{user_id}", summary="Erase a user and their data (GDPR Art. 17)")
def erase(request: Request, user_id: int) -> dict[str, Any]:
    access = access_of(request)
    with transaction(request) as s:
        removed = erase_user(s, _user_id(user_id))
    if removed is None:
        raise EngineError("no such user", 404, "not_found")
    access.gate.end_streams(user_id=user_id)
    access.authn.forget(user_id)
    access.quotas.forget()
    return {"erased": user_id, "removed": removed}


class EndUserRef(BaseModel):
    """One end user of a site account: the account (id) and the value its application sends as `user`
    (in the body, never in a URL that logs keep)."""

    account: int = Field(ge=1, le=2**31 - 1)
    user: str = Field(min_length=1, max_length=MAX_END_USER_CHARS)


def _end_user(request: Request, s: Any, ref: EndUserRef) -> str:
    if s.get(User, ref.account) is None:
        raise EngineError("no such user", 404, "not_found")
    return end_user_pseudonym(ref.account, ref.user, access_of(request).pseudonym_key)


@router.post("/privacy/end-users/export", summary="Every usage record of one end user of a site account (Art. 15)")
def export_end_user_route(request: Request, ref: EndUserRef) -> dict[str, Any]:
    with transaction(request) as s:
        return export_end_user(s, _end_user(request, s, ref))


@router.post("/privacy/end-users/erase", summary="Unlink one end user's usage records, delete their counters (Art. 17)")
def erase_end_user_route(request: Request, ref: EndUserRef) -> dict[str, Any]:
    with transaction(request) as s:
        removed = erase_end_user(s, _end_user(request, s, ref))
    access_of(request).quotas.forget()
    return {"removed": removed}


@router.get("/privacy/report", summary="Record of processing activities (Art. 30 GDPR), Markdown")
def report(request: Request) -> Response:
    with transaction(request) as s:
        stored = ops.stored_backends(s)
    return Response(processing_report(access_of(request).settings, stored), media_type="text/markdown; charset=utf-8")
