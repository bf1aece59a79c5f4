"""API keys: create (scopes, models, expiry, course), list, find, revoke; the full key is shown once.

The same rules serve `/admin/…`, `/me/keys` and `flexi keys`: which scopes a key may carry (admin scopes
only for an admin owner), how an expiry is given, how many models it may name. Refusals a student may
read carry catalogue keys (`flexi.i18n`). Views show keys by prefix only, never a secret or hash.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from flexi.access.admin_ops.checks import CONTROL, PATTERN, choice, filter_text, iso, paging, valid_id
from flexi.access.admin_ops.errors import refusal
from flexi.access.admin_ops.users import get_user
from flexi.db.apikeys import KEY_PREFIX, PREFIX_CHARS, CreatedKey, create_key, prefix_of
from flexi.db.models import ApiKey, Course, CourseMember, utcnow

SCOPES = ("inference", "account", "manage", "admin")  # account: export/erase/keys of the owner's account
ADMIN_SCOPES = ("manage", "admin")
DEFAULT_SCOPES = ("inference",)
MAX_KEY_DAYS = 3650
MAX_KEY_MODELS = 100
MAX_OWN_KEYS = 50  # active self-service keys per user
_PREFIX_REF = re.compile(rf"^{KEY_PREFIX}[a-z0-9]{{{PREFIX_CHARS}}}$")


def key_state(row: ApiKey, now: datetime | None = None) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def key_view(row: ApiKey, now: datetime | None = None) -> dict[str, Any]:
    """Everything about a key except its secret and hash."""
    return {
        "id": row.id, "prefix": row.prefix, "owner_id": row.owner_id, "name": row.name,
        "scopes": list(row.scopes or []), "models": None if row.models is None else list(row.models),
        "course_id": row.course_id, "created_at": iso(row.created_at), "expires_at": iso(row.expires_at),
        "revoked_at": iso(row.revoked_at), "last_used_at": iso(row.last_used_at), "state": key_state(row, now),
    }


def parse_expiry(value: object, now: datetime | None = None) -> datetime | None:
    """None, a number of days (int or digits), or an ISO date/datetime. A date means the key
    is valid through that day (UTC); a datetime without zone is UTC."""
    now = now or utcnow()
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    shown = str(value)[:40]
    if isinstance(value, bool):
        raise refusal("key_expiry_invalid", value=shown)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()[:6])
    if isinstance(value, int):
        if not 1 <= value <= MAX_KEY_DAYS:
            raise refusal("key_expiry_invalid", value=shown)
        return now + timedelta(days=value)
    if isinstance(value, datetime):
        at = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        at = datetime.combine(value + timedelta(days=1), time(), tzinfo=UTC)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                at = datetime.combine(date.fromisoformat(text) + timedelta(days=1), time(), tzinfo=UTC)
            else:
                parsed = datetime.fromisoformat(text)
                at = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError):
            raise refusal("key_expiry_invalid", value=shown) from None
    else:
        raise refusal("key_expiry_invalid", value=shown)
    at = at.astimezone(UTC)
    if at <= now:
        raise refusal("key_expiry_past", value=shown)
    if at > now + timedelta(days=MAX_KEY_DAYS + 1):
        raise refusal("key_expiry_invalid", value=shown)
    return at


def expiry_from(days: int | None, at: str | None) -> object:
    """The one expiry of a request that may give days or a date, not both."""
    if days is not None and at is not None:
        raise refusal("key_expiry_both")
    return days if days is not None else at


def _scopes(scopes: Sequence[str] | None) -> list[str]:
    if scopes is None:
        return list(DEFAULT_SCOPES)
    if isinstance(scopes, str):
        scopes = [s for s in scopes.split(",")]
    out: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or scope.strip() not in SCOPES:
            shown = scope.strip()[:40] if isinstance(scope, str) and not CONTROL.search(scope) else "?"
            raise refusal("key_scope_unknown", scope=repr(shown))
        if scope.strip() not in out:
            out.append(scope.strip())
    if not out:
        raise refusal("key_scopes_empty")
    return out


def model_patterns(models: Sequence[str] | None) -> list[str] | None:
    """A key's or policy's model list: None (no restriction) or 1…100 names/globs."""
    if models is None:
        return None
    if isinstance(models, str) or not 1 <= len(models) <= MAX_KEY_MODELS:
        raise refusal("key_models_invalid", limit=MAX_KEY_MODELS)
    out: list[str] = []
    for model in models:
        if not isinstance(model, str) or not PATTERN.match(model.strip()):
            raise refusal("key_models_invalid", limit=MAX_KEY_MODELS)
        if model.strip() not in out:
            out.append(model.strip())
    return out


def create_api_key(session: Session, owner_id: object, *, name: str = "", scopes: Sequence[str] | None = None,
                   models: Sequence[str] | None = None, expires: object = None, course_id: object = None,
                   require_membership: bool = False, now: datetime | None = None, admins: Collection[str] = ()) -> tuple[CreatedKey, ApiKey]:
    """A new key for user `owner_id` (default scope: inference only). Returns
    `(CreatedKey, row)`; the full key is in `CreatedKey.key` and nowhere else.
    `require_membership`: the course must be one the owner belongs to (self-service)."""
    owner = get_user(session, owner_id)
    if owner.disabled_at is not None:
        raise refusal("key_owner_disabled", 409)
    label = "" if name is None else name
    if not isinstance(label, str) or len(label.strip()) > 100 or CONTROL.search(label):
        raise refusal("key_name_invalid", limit=100)
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        raise refusal("key_name_invalid", limit=100) from None
    chosen = _scopes(scopes)
    for scope in chosen:
        if scope in ADMIN_SCOPES and owner.role != "admin" and owner.subject not in admins:
            raise refusal("key_scope_owner", scope=scope)
    patterns = model_patterns(models)
    expires_at = parse_expiry(expires, now)
    course: int | None = None
    if course_id is not None:
        ident = valid_id(course_id)
        found = session.get(Course, ident) if ident is not None else None
        member = found is not None and (not require_membership or session.get(CourseMember, (found.id, owner.id)) is not None)
        if not member:
            raise refusal("course_unknown", 404, course=str(course_id)[:40])
        course = found.id  # type: ignore[union-attr]
    created = create_key(session, owner.id, label.strip(), scopes=chosen, models=patterns, expires_at=expires_at, now=now)
    row = session.get(ApiKey, created.info.id)
    assert row is not None
    row.course_id = course
    session.flush()
    return created, row


def list_api_keys(session: Session, *, owner_id: object = None, state: str | None = None,
                  prefix: str | None = None, limit: int = 100, offset: int = 0) -> list[ApiKey]:
    """Keys (owner loaded) by id; `state`: active, revoked, expired or None/all."""
    limit, offset = paging(limit, offset)
    query = select(ApiKey).options(joinedload(ApiKey.owner)).order_by(ApiKey.id).limit(limit).offset(offset)
    if owner_id is not None:
        ident = valid_id(owner_id)
        if ident is None:
            return []
        query = query.where(ApiKey.owner_id == ident)
    now = utcnow()
    if state not in (None, "all"):
        state = choice(state, ("active", "revoked", "expired", "all"), "state")
        if state == "revoked":
            query = query.where(ApiKey.revoked_at.is_not(None))
        elif state == "expired":
            query = query.where(ApiKey.revoked_at.is_(None), ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now)
        else:
            query = query.where(ApiKey.revoked_at.is_(None), (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))
    if (start := filter_text(prefix, "prefix", 64)) is not None:
        query = query.where(ApiKey.prefix.startswith(start, autoescape=True))
    return list(session.scalars(query).unique())


def get_api_key(session: Session, key_id: object, *, owner_id: int | None = None) -> ApiKey:
    """A key by id; with `owner_id` only that user's (someone else's key is 'not found')."""
    ident = valid_id(key_id)
    row = session.get(ApiKey, ident) if ident is not None else None
    if row is None or (owner_id is not None and row.owner_id != owner_id):
        raise refusal("key_not_found", 404, key_id=str(key_id)[:20])
    return row


def find_api_key(session: Session, ref: str) -> ApiKey:
    """A key by id or prefix (the CLI's KEY argument). A full key pasted by mistake is
    reduced to its prefix, so it is never echoed."""
    text = (ref or "").strip()
    prefix = prefix_of(text) or (text if _PREFIX_REF.match(text) else None)
    if prefix is not None:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None:
            raise refusal("key_not_found", 404, key_id=prefix)
        return row
    if valid_id(text) is None:
        raise refusal("key_not_found", 404, key_id="?")
    return get_api_key(session, text)


def revoke_api_key(session: Session, key_id: object, *, owner_id: int | None = None) -> ApiKey:
    """Revoke a key (again: keeps the first time). The caller ends its streams."""
    row = get_api_key(session, key_id, owner_id=owner_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def active_key_count(session: Session, owner_id: int) -> int:
    now = utcnow()
    return session.scalar(select(func.count()).select_from(ApiKey).where(
        ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None),
        (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))) or 0
