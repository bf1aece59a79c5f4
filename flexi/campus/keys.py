"""Self-service API keys: `GET/POST /me/keys`, `GET/DELETE /me/keys/{id}`.

A user sees and changes only their own keys; someone else's key id answers
404 exactly like a missing one, so ids reveal nothing. The full key is in the
creation response only (never in logs or error bodies: prefix only).

No key can mint a wider key: students get scope `inference` only (asking for
`manage`/`admin` is a 403), and a request authenticated with a key may create
keys only within that key's scopes, models and expiry; otherwise a leaked
inference-only key could be turned into a permanent admin key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from flexi import i18n
from flexi.access import admin_ops as ops
from flexi.access.errors import forbidden
from flexi.access.principal import Principal
from flexi.http.caller import caller_of
from flexi.campus.admin import KeyCreate, PathId
from flexi.campus.admin_common import AdminRoute, transaction
from flexi.db.models import ApiKey, Quota
from flexi.http.app_state import access_of

router = APIRouter(prefix="/me", tags=["me"], route_class=AdminRoute)

WARNING = {"en": "this is the only time the full key is shown; store it now",
           "de": "der vollständige Schlüssel wird nur jetzt angezeigt; bitte jetzt sicher speichern"}


def _me(request: Request) -> tuple[Principal, int, str]:
    principal = caller_of(request).principal
    locale = caller_of(request).locale
    if principal.user_id is None:
        raise forbidden("there is no signed-in user: authentication is off (FLEXI_AUTH=off)")
    return principal, principal.user_id, locale


def _check_rights(session: Session, principal: Principal, body: KeyCreate, locale: str) -> tuple[list[str], list[str] | None, object]:
    """The scopes, models and expiry the new key gets, never more than the caller has."""
    scopes = list(dict.fromkeys(body.scopes)) if body.scopes is not None else None
    for scope in scopes or ():
        if scope in ops.ADMIN_SCOPES and principal.role != "admin":
            raise forbidden(i18n.text("key_scope_denied", locale, scope=scope))
    expiry: object = ops.expiry_from(body.expires_in_days, body.expires_at)
    models = body.models
    if principal.key_id is None:
        return scopes or list(ops.DEFAULT_SCOPES), models, expiry
    # authenticated with a key: stay within that key's rights
    if principal.key_scopes:
        wanted = scopes if scopes is not None else list(ops.DEFAULT_SCOPES)
        if any(s not in principal.key_scopes for s in wanted):
            raise forbidden(i18n.text("key_wider", locale, what="scopes"))
        scopes = wanted
    if principal.key_models is not None:
        if models is None:
            models = list(principal.key_models)
        elif any(m.strip() not in principal.key_models for m in models):
            raise forbidden(i18n.text("key_wider", locale, what="models"))
    caller = session.get(ApiKey, principal.key_id)
    if caller is not None and caller.expires_at is not None:
        new_expiry = ops.parse_expiry(expiry)
        if new_expiry is None:
            expiry = caller.expires_at
        elif new_expiry > caller.expires_at:
            raise forbidden(i18n.text("key_wider", locale, what="expiry"))
        else:
            expiry = new_expiry
    return scopes or list(ops.DEFAULT_SCOPES), models, expiry


@router.get("/keys", summary="List my API keys (prefixes only)")
def list_my_keys(request: Request) -> dict[str, Any]:
    _principal, user_id, locale = _me(request)
    with transaction(request, locale) as s:
        return {"keys": [ops.key_view(k) for k in ops.list_api_keys(s, owner_id=user_id, limit=ops.MAX_LIMIT)]}


@router.post("/keys", status_code=201, summary="Create an API key (the full key is shown only in this response)")
def create_my_key(request: Request, body: KeyCreate) -> dict[str, Any]:
    principal, user_id, locale = _me(request)
    with transaction(request, locale) as s:
        scopes, models, expiry = _check_rights(s, principal, body, locale)
        if ops.active_key_count(s, user_id) >= ops.MAX_OWN_KEYS:
            raise ops.AdminError(i18n.text("key_limit", "en", limit=ops.MAX_OWN_KEYS), 409,
                                 key="key_limit", values={"limit": ops.MAX_OWN_KEYS})
        course_id = body.course_id
        parent_quota = None
        if principal.key_id is not None:
            # a key may only mint keys inside its own limits: same course, same key quota
            if principal.key_course_id is not None:
                if course_id is not None and course_id != principal.key_course_id:
                    raise forbidden(i18n.text("key_wider", locale, what="course"))
                course_id = principal.key_course_id
            parent_quota = s.scalar(select(Quota).where(Quota.subject_kind == "key", Quota.subject_id == principal.key_id))
        created, row = ops.create_api_key(s, user_id, admins=access_of(request).settings.admins, name=body.name,
                                          scopes=scopes, models=models, expires=expiry, course_id=course_id,
                                          require_membership=True)
        if parent_quota is not None:
            s.add(Quota(subject_kind="key", subject_id=row.id, requests_per_minute=parent_quota.requests_per_minute,
                        tokens_per_day=parent_quota.tokens_per_day, tokens_per_week=parent_quota.tokens_per_week))
            s.flush()
        return {**ops.key_view(row), "key": created.key, "warning": WARNING[locale]}


@router.get("/keys/{key_id}", summary="Show one of my API keys")
def show_my_key(request: Request, key_id: PathId) -> dict[str, Any]:
    _principal, user_id, locale = _me(request)
    with transaction(request, locale) as s:
        return ops.key_view(ops.get_api_key(s, key_id, owner_id=user_id))


@router.delete("/keys/{key_id}", summary="Revoke one of my API keys (its open streams end)")
def revoke_my_key(request: Request, key_id: PathId) -> dict[str, Any]:
    _principal, user_id, locale = _me(request)
    with transaction(request, locale) as s:
        view = ops.key_view(ops.revoke_api_key(s, key_id, owner_id=user_id))
    access_of(request).gate.end_streams(key_id=key_id)
    return view

