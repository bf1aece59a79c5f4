"""Quotas: requests per minute and tokens per day/week for a role, user, key or course, and for each end
user of a service key (kind `enduser`, subject = the key: what every one of the application's users gets,
OpenAI's `user`; only a `service` user's key may split its requests among end users).

A role's limits start from FLEXI_DEFAULT_ROLE_QUOTAS until an administrator sets them; `quota_usage`
shows which limits are in force and what was used in the current windows (from the quota ledger).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flexi.access.admin_ops.checks import choice, get_row, limit_value
from flexi.access.admin_ops.errors import AdminError, refusal
from flexi.access.quota import QuotaLedger
from flexi.db.models import QUOTA_SUBJECTS, ROLES, ApiKey, Base, Course, Quota, RoleQuota, User

QUOTA_FIELDS = ("requests_per_minute", "tokens_per_day", "tokens_per_week")
QUOTA_KINDS = (*QUOTA_SUBJECTS, "role")


def _quota_subject(session: Session, kind: str, subject: object) -> tuple[str, int | str, str]:
    """(kind, id or role, label) for an existing subject; 404 if it does not exist."""
    kind = choice(kind, QUOTA_KINDS, "quota subject kind")
    if kind == "role":
        role = choice(subject, ROLES, "role")
        return kind, role, role
    model: type[Base] = {"user": User, "key": ApiKey, "enduser": ApiKey, "course": Course}[kind]
    row = get_row(session, model, subject, "key" if kind == "enduser" else kind)
    label = {"user": lambda r: r.subject, "key": lambda r: r.prefix, "enduser": lambda r: r.prefix,
             "course": lambda r: r.name}[kind](row)
    return kind, row.id, label  # type: ignore[attr-defined]


def _quota_label(session: Session, kind: str, sid: int) -> str | None:
    if kind == "user":
        return session.scalar(select(User.subject).where(User.id == sid))
    if kind in ("key", "enduser"):
        return session.scalar(select(ApiKey.prefix).where(ApiKey.id == sid))
    return session.scalar(select(Course.name).where(Course.id == sid))


def quota_view(kind: str, subject: int | str, label: str | None, row: Quota | RoleQuota | None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "subject": subject, "label": label}
    for name in QUOTA_FIELDS:
        out[name] = getattr(row, name) if row is not None else None
    return out


def set_quota(session: Session, kind: str, subject: object, values: Mapping[str, Any],
              defaults: Mapping[str, Mapping[str, int | None]] | None = None) -> dict[str, Any]:
    """Set some limits of a user, key, course or role (keys absent = unchanged, None = no limit).
    A role's first row starts from its configured default (FLEXI_DEFAULT_ROLE_QUOTAS), so the
    limits not named stay as they were in force."""
    unknown = set(values) - set(QUOTA_FIELDS)
    if unknown:
        raise AdminError(f"unknown quota field(s): {', '.join(sorted(unknown))}")
    if not values:
        raise AdminError(f"give at least one of {', '.join(QUOTA_FIELDS)}")
    checked = {name: limit_value(value, name) for name, value in values.items()}
    kind, sid, label = _quota_subject(session, kind, subject)
    if kind == "enduser":
        _require_service_key(session, sid)  # type: ignore[arg-type]
    row: Quota | RoleQuota | None
    if kind == "role":
        row = session.get(RoleQuota, sid)
        if row is None:
            row = RoleQuota(role=sid, **{n: (defaults or {}).get(sid, {}).get(n) for n in QUOTA_FIELDS})
            session.add(row)
    else:
        row = session.scalar(select(Quota).where(Quota.subject_kind == kind, Quota.subject_id == sid))
        if row is None:
            row = Quota(subject_kind=kind, subject_id=sid)
            session.add(row)
    for name, value in checked.items():
        setattr(row, name, value)
    session.flush()
    return quota_view(kind, sid, label, row)


def _require_service_key(session: Session, key_id: int) -> None:
    """End-user limits only on a key a `service` user owns: a person's key must not multiply its share."""
    role = session.scalar(select(User.role).join(ApiKey, ApiKey.owner_id == User.id).where(ApiKey.id == key_id))
    if role != "service":
        raise refusal("end_user_quota_service_only", prefix=_quota_label(session, "enduser", key_id) or "?")


def clear_quota(session: Session, kind: str, subject: object) -> None:
    kind, sid, label = _quota_subject(session, kind, subject)
    row = session.get(RoleQuota, sid) if kind == "role" else session.scalar(
        select(Quota).where(Quota.subject_kind == kind, Quota.subject_id == sid))
    if row is None:
        raise AdminError(f"no quota set for {kind} {label}", 404)
    session.delete(row)
    session.flush()


def list_quotas(session: Session, kind: str | None = None,
                defaults: Mapping[str, Mapping[str, int | None]] | None = None) -> list[dict[str, Any]]:
    """All quota rows (roles first), each with a readable label; with `defaults`
    (FLEXI_DEFAULT_ROLE_QUOTAS) also the configured limits of roles that have no row, marked
    `"default": true` (setting the role's quota replaces them, clearing it brings them back)."""
    if kind is not None:
        kind = choice(kind, QUOTA_KINDS, "quota subject kind")
    out: list[dict[str, Any]] = []
    if kind in (None, "role"):
        rows = list(session.scalars(select(RoleQuota).order_by(RoleQuota.role)))
        out += [quota_view("role", r.role, r.role, r) for r in rows]
        have = {r.role for r in rows}
        out += [{"kind": "role", "subject": role, "label": role, **{n: values.get(n) for n in QUOTA_FIELDS},
                 "default": True} for role, values in sorted((defaults or {}).items()) if role not in have]
    if kind != "role":
        query = select(Quota).order_by(Quota.subject_kind, Quota.subject_id)
        if kind is not None:
            query = query.where(Quota.subject_kind == kind)
        out += [quota_view(q.subject_kind, q.subject_id, _quota_label(session, q.subject_kind, q.subject_id), q)
                for q in session.scalars(query)]
    return out


def quota_usage(session: Session, kind: str, subject: object,
                defaults: Mapping[str, Mapping[str, int | None]] | None = None) -> dict[str, Any]:
    """The limits that apply to a user, key or course now and what was used in the current windows
    (`defaults`: FLEXI_DEFAULT_ROLE_QUOTAS, for a role that has no row of its own)."""
    kind, sid, label = _quota_subject(session, kind, subject)
    if kind == "role":
        raise AdminError("usage is counted per user, key or course, not per role")
    if kind == "enduser":
        raise AdminError("end users are counted one by one: see /admin/usage?key_id= grouped by end_user")
    assert isinstance(sid, int)
    row: Quota | RoleQuota | None = session.scalar(
        select(Quota).where(Quota.subject_kind == kind, Quota.subject_id == sid))
    source = "own" if row is not None else None
    if row is None and kind == "user":
        role = session.scalar(select(User.role).where(User.id == sid))
        row = session.get(RoleQuota, role)
        source = f"role {role}" if row is not None else None
        if row is None and defaults and role in defaults:
            used = QuotaLedger(session.get_bind()).usage_of(session.connection(), kind, sid)  # type: ignore[arg-type]
            return {"kind": kind, "subject": sid, "label": label, "limits_from": f"role {role} (default)",
                    "limits": {name: defaults[role].get(name) for name in QUOTA_FIELDS}, "used": used}
    used = QuotaLedger(session.get_bind()).usage_of(session.connection(), kind, sid)  # type: ignore[arg-type]
    limits = {name: getattr(row, name) if row is not None else None for name in QUOTA_FIELDS}
    return {"kind": kind, "subject": sid, "label": label, "limits_from": source, "limits": limits, "used": used}
