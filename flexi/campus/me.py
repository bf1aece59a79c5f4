"""Each person's own data: profile, usage and quotas, export, erasure, terms of use.

There are no ids in these routes: they always act on the caller, so nobody can
reach someone else's data through them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from flexi import i18n
from flexi.access.credentials import lti_only, session_token
from flexi.access.errors import forbidden
from flexi.access.principal import Principal
from flexi.http.app_state import access_of
from flexi.http.caller import caller_of
from flexi.access.privacy import erase_user, export_user
from flexi.access.usage_queries import own_usage
from flexi.campus.admin_common import AdminRoute, transaction
from flexi.db.models import Course, CourseMember, TermsAcceptance, User, utcnow, iso_z
from flexi.engine.types import BadRequest, EngineError
from flexi.http.sessions import is_secure
from flexi.http.csrf import csrf_token

router = APIRouter(tags=["me"], route_class=AdminRoute)


def _caller(request: Request) -> tuple[Principal, int, str]:
    principal = caller_of(request).principal
    if principal.user_id is None:
        raise forbidden("there is no signed-in user: authentication is off (FLEXI_AUTH=off)")
    return principal, principal.user_id, caller_of(request).locale


@router.get("/me", summary="Who am I: profile, role, groups, courses, terms status")
def me(request: Request) -> dict[str, Any]:
    principal, user_id, locale = _caller(request)
    settings = access_of(request).settings
    with transaction(request, locale) as s:
        user = s.get(User, user_id)
        if user is None:
            raise EngineError(i18n.text("user_gone", locale), 404, "not_found")
        courses = s.execute(select(Course.id, Course.name, Course.title, CourseMember.role)
                            .join(CourseMember, CourseMember.course_id == Course.id)
                            .where(CourseMember.user_id == user_id).order_by(Course.name)).all()
        accepted = s.scalars(select(TermsAcceptance.version).where(TermsAcceptance.user_id == user_id)).all()
    return {
        "id": user.id, "subject": user.subject, "display_name": user.display_name, "email": user.email,
        "role": principal.role, "locale": user.locale, "groups": sorted(principal.groups),
        "courses": [{"id": i, "name": n, "title": t, "role": r} for i, n, t, r in courses],
        "key": {"id": principal.key_id, "prefix": principal.key_prefix, "scopes": list(principal.key_scopes)}
        if principal.key_id is not None else None,
        "terms": {"version": settings.terms_version or None, "url": settings.terms_url,
                  "accepted": bool(settings.terms_version) and settings.terms_version in accepted,
                  "accepted_versions": sorted(accepted)},
        "csrf_token": _csrf_of(request) if principal.session else None,
    }


def _csrf_of(request: Request) -> str | None:
    """The token the web page sends back on changes (flexi.http.csrf); only for cookie sign-ins."""
    token = session_token(request.headers.get("cookie"), is_secure(request, access_of(request).settings),
                          lti_only(request.headers.raw))
    return csrf_token(token) if token else None


class ProfileChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    locale: Literal["de", "en"] | None = None
    display_name: str | None = Field(default=None, min_length=1, max_length=255)


@router.patch("/me", summary="Change my language or display name")
def change_me(request: Request, body: ProfileChange) -> dict[str, Any]:
    _principal, user_id, locale = _caller(request)
    with transaction(request, locale) as s:
        user = s.get(User, user_id)
        if user is None:
            raise EngineError(i18n.text("user_gone", locale), 404, "not_found")
        if body.locale is not None:
            user.locale = body.locale
        if body.display_name is not None:
            user.display_name = body.display_name.strip() or user.display_name
        out = {"locale": user.locale, "display_name": user.display_name}
    access_of(request).authn.forget(user_id)  # the cached principal carries the locale
    return out


@router.get("/me/usage", summary="My usage (last 30 days by day and model) and my quotas")
def my_usage(request: Request, days: int = 30) -> dict[str, Any]:
    principal, _user_id, locale = _caller(request)
    if not 1 <= days <= 3660:
        raise BadRequest("days must be between 1 and 3660", param="days")
    with transaction(request, locale) as s:
        return own_usage(s, principal, access_of(request).quotas, days)


@router.get("/me/export", summary="Everything Flexi stores about me, as JSON (GDPR Art. 15)")
def my_export(request: Request) -> Response:
    _principal, user_id, locale = _caller(request)
    with transaction(request, locale) as s:
        data = export_user(s, user_id, access_of(request).settings)
    if data is None:
        raise EngineError(i18n.text("user_gone", locale), 404, "not_found")
    return Response(json.dumps(data, ensure_ascii=False, indent=2), media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="flexi-export.json"'})


@router.delete("/me", status_code=204, summary="Erase my account and data (GDPR Art. 17); needs ?confirm=true")
def erase_me(request: Request, confirm: bool = False) -> Response:
    _principal, user_id, locale = _caller(request)
    if not confirm:
        raise BadRequest(i18n.text("erase_confirm", locale), param="confirm")
    access = access_of(request)
    with transaction(request, locale) as s:
        if erase_user(s, user_id) is None:
            raise EngineError(i18n.text("user_gone", locale), 404, "not_found")
    access.gate.end_streams(user_id=user_id)
    access.authn.forget(user_id)
    access.quotas.forget()
    return Response(status_code=204)


class TermsAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=32)


@router.post("/me/terms", summary="Accept the current terms of use")
def accept_terms(request: Request, body: TermsAccept) -> dict[str, Any]:
    _principal, user_id, locale = _caller(request)
    current = access_of(request).settings.terms_version
    if not current:
        raise BadRequest(i18n.text("no_terms", locale))
    if body.version != current:
        raise BadRequest(i18n.text("terms_version", locale, version=current), param="version")
    with transaction(request, locale) as s:
        exists = s.scalar(select(TermsAcceptance).where(TermsAcceptance.user_id == user_id,
                                                        TermsAcceptance.version == current))
        if exists is None:
            exists = TermsAcceptance(user_id=user_id, version=current, accepted_at=utcnow())
            s.add(exists)
            s.flush()
        accepted_at = exists.accepted_at
    return {"version": current, "accepted_at": iso_z(accepted_at)}


@router.get("/terms", summary="The current terms of use (public)")
def terms(request: Request, lang: Literal["de", "en"] | None = None) -> dict[str, Any]:
    """The text of `FLEXI_HOME/terms.<lang>.md`, else `terms.md` (Markdown, written by the operator)."""
    settings = access_of(request).settings
    text = None
    for name in ([f"terms.{lang}.md"] if lang else []) + ["terms.md"]:
        path = settings.home / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            break
    return {"version": settings.terms_version or None, "url": settings.terms_url, "text": text}
