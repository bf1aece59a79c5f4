"""Model policies: which roles and groups may use which models (name or glob), with context and
output limits. The access layer reloads them after every change (`PolicyBook.invalidate`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flexi.access.admin_ops.checks import (
    CONTROL,
    PATTERN,
    add_row,
    choice,
    clean_text,
    filter_text,
    get_row,
    limit_value,
    not_found,
    valid_id,
)
from flexi.access.admin_ops.errors import AdminError
from flexi.db.models import ROLES, ModelPolicy

MAX_LIST_ITEMS = 100  # roles/groups in a policy


def policy_view(row: ModelPolicy) -> dict[str, Any]:
    return {"id": row.id, "pattern": row.pattern,
            "allowed_roles": None if row.allowed_roles is None else list(row.allowed_roles),
            "allowed_groups": None if row.allowed_groups is None else list(row.allowed_groups),
            "max_context": row.max_context, "max_output": row.max_output}


def _pattern(value: object) -> str:
    if not isinstance(value, str) or not PATTERN.match(value.strip()):
        raise AdminError("pattern must be a model name or glob (letters, digits and . _ : / * ? [ ] ! @ + -), "
                         "at most 255 characters")
    return value.strip()


def _name_list(value: object, field_name: str, what: str, check: Callable[[object], str | None]) -> list[str] | None:
    """None (no restriction), or up to MAX_LIST_ITEMS names, each passed through `check`, without repeats."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) > MAX_LIST_ITEMS:
        raise AdminError(f"{field_name} must be a list of {what} or null")
    out: list[str] = []
    for item in value:
        name = check(item)
        if name is not None and name not in out:
            out.append(name)
    return out


def _role_list(value: object) -> list[str] | None:
    return _name_list(value, "allowed_roles", "roles", lambda role: choice(role, ROLES, "role"))


def _group_list(value: object) -> list[str] | None:
    return _name_list(value, "allowed_groups", "group names", lambda name: clean_text(name, "group name", 100))


def _apply_policy(row: ModelPolicy, changes: Mapping[str, Any]) -> None:
    unknown = set(changes) - {"pattern", "allowed_roles", "allowed_groups", "max_context", "max_output"}
    if unknown:
        raise AdminError(f"unknown field(s): {', '.join(sorted(unknown))}")
    if "pattern" in changes:
        row.pattern = _pattern(changes["pattern"])
    if "allowed_roles" in changes:
        row.allowed_roles = _role_list(changes["allowed_roles"])
    if "allowed_groups" in changes:
        row.allowed_groups = _group_list(changes["allowed_groups"])
    for name in ("max_context", "max_output"):
        if name in changes:
            setattr(row, name, limit_value(changes[name], name, minimum=1))


def create_policy(session: Session, pattern: str, **fields: Any) -> ModelPolicy:
    row = ModelPolicy(pattern=_pattern(pattern))
    _apply_policy(row, fields)
    if session.scalar(select(ModelPolicy.id).where(ModelPolicy.pattern == row.pattern)) is not None:
        raise AdminError(f"a policy for {row.pattern!r} exists already", 409)
    add_row(session, row, f"a policy for {row.pattern!r} exists already")
    return row


def update_policy(session: Session, policy_id: object, changes: Mapping[str, Any]) -> ModelPolicy:
    row = get_policy(session, policy_id)
    _apply_policy(row, changes)
    if "pattern" in changes and session.scalar(select(ModelPolicy.id).where(
            ModelPolicy.pattern == row.pattern, ModelPolicy.id != row.id)) is not None:
        raise AdminError(f"a policy for {row.pattern!r} exists already", 409)
    session.flush()
    return row


def set_policy(session: Session, pattern: str, changes: Mapping[str, Any]) -> tuple[ModelPolicy, bool]:
    """Create or change the policy for `pattern` (the CLI's `policies set`); True if created."""
    text = _pattern(pattern)
    row = session.scalar(select(ModelPolicy).where(ModelPolicy.pattern == text))
    if row is None:
        return create_policy(session, text, **changes), True
    _apply_policy(row, changes)
    session.flush()
    return row, False


def list_policies(session: Session, *, search: str | None = None) -> list[ModelPolicy]:
    query = select(ModelPolicy).order_by(ModelPolicy.pattern)
    if (needle := filter_text(search, "search")) is not None:
        query = query.where(ModelPolicy.pattern.contains(needle, autoescape=True))
    return list(session.scalars(query))


def get_policy(session: Session, policy_id: object) -> ModelPolicy:
    return get_row(session, ModelPolicy, policy_id, "policy")


def find_policy(session: Session, ref: str) -> ModelPolicy:
    """A policy by pattern, else by numeric id."""
    text = (ref or "").strip()
    row = session.scalar(select(ModelPolicy).where(ModelPolicy.pattern == text)) if PATTERN.match(text) else None
    if row is None and (ident := valid_id(text)) is not None:
        row = session.get(ModelPolicy, ident)
    if row is None:
        raise not_found("policy", text[:255] if not CONTROL.search(text) else "?")
    return row


def delete_policy(session: Session, policy_id: object) -> ModelPolicy:
    row = get_policy(session, policy_id)
    session.delete(row)
    session.flush()
    return row
