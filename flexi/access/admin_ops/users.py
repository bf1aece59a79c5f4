"""Users: create, list, find, change (role, name, e-mail, language, disabled), password, delete.

The last enabled admin cannot be demoted, disabled or deleted (the CLI can override this with --force),
so an installation never locks itself out. Views never include password hashes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from flexi.access.admin_ops.checks import (
    add_row,
    choice,
    clean_text,
    filter_text,
    get_row,
    iso,
    not_found,
    paging,
    valid_id,
)
from flexi.access.admin_ops.errors import AdminError
from flexi.access.passwords import hash_password
from flexi.db.models import LOCALES, ROLES, ApiKey, LoginSession, Quota, QuotaCounter, User, utcnow
from flexi.db.pseudonym import pseudonymize

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id, "subject": user.subject, "pseudonym": user.pseudonym, "display_name": user.display_name,
        "email": user.email, "role": user.role, "locale": user.locale, "created_at": iso(user.created_at),
        "disabled": user.disabled_at is not None, "disabled_at": iso(user.disabled_at),
        "has_password": user.password_hash is not None,
    }


def _email(value: object) -> str | None:
    text = clean_text(value, "email", 320, allow_spaces=False, required=False)
    if text is not None and not _EMAIL.match(text):
        raise AdminError("email must look like name@domain")
    return text


def _password_hash(password: str) -> str:
    if not isinstance(password, str):
        raise AdminError("password must be text")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise AdminError("password is not valid Unicode text") from None
    try:
        return hash_password(password)
    except ValueError as exc:  # too short or too long: the message says which
        raise AdminError(str(exc)) from None


def create_user(session: Session, pseudonym_key: bytes, subject: str, *, display_name: str | None = None,
                email: str | None = None, role: str = "student", locale: str | None = None,
                password: str | None = None) -> User:
    """A new user; `subject` is the external identity (SSO `sub` or a local user name).
    Without `locale` the user's messages are German (the schema's default)."""
    subject_text = clean_text(subject, "subject", 255, allow_spaces=False)
    assert subject_text is not None
    user = User(subject=subject_text, pseudonym=pseudonymize(subject_text, pseudonym_key),
                display_name=clean_text(display_name, "display_name", 255, required=False),
                email=_email(email), role=choice(role, ROLES, "role"), locale=choice(locale or "de", LOCALES, "locale"),
                password_hash=None if password is None else _password_hash(password))
    if session.scalar(select(User.id).where(User.subject == subject_text)) is not None:
        raise AdminError(f"a user with subject {subject_text!r} exists already", 409)
    add_row(session, user, f"a user with subject {subject_text!r} exists already")
    return user


def list_users(session: Session, *, role: str | None = None, search: str | None = None, disabled: bool | None = None,
               limit: int = 100, offset: int = 0) -> list[User]:
    """Users by id; `search` is a case-insensitive substring of subject, display name or e-mail."""
    limit, offset = paging(limit, offset)
    query = select(User).order_by(User.id).limit(limit).offset(offset)
    if role is not None:
        query = query.where(User.role == choice(role, ROLES, "role"))
    if (needle := filter_text(search, "search")) is not None:
        needle = needle.lower()
        query = query.where(func.lower(User.subject).contains(needle, autoescape=True)
                            | func.lower(func.coalesce(User.display_name, "")).contains(needle, autoescape=True)
                            | func.lower(func.coalesce(User.email, "")).contains(needle, autoescape=True))
    if disabled is not None:
        query = query.where(User.disabled_at.is_not(None) if disabled else User.disabled_at.is_(None))
    return list(session.scalars(query))


def get_user(session: Session, user_id: object) -> User:
    return get_row(session, User, user_id, "user")


def find_user(session: Session, ref: str) -> User:
    """A user by subject, else by numeric id (the CLI's USER argument)."""
    text = clean_text(ref, "user", 255)
    user = session.scalar(select(User).where(User.subject == text))
    if user is None and (ident := valid_id(text)) is not None:
        user = session.get(User, ident)
    if user is None:
        raise not_found("user", text)
    return user


def _other_enabled_admins(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.disabled_at.is_(None), User.id != user_id)) or 0


def _guard_last_admin(session: Session, user: User, force: bool) -> None:
    if force or user.role != "admin" or user.disabled_at is not None:
        return
    if _other_enabled_admins(session, user.id) == 0:
        raise AdminError(f"{user.subject} is the last enabled admin; make another admin first "
                         "(the CLI can override this with --force)", 409)


@dataclass
class UserChange:
    user: User
    reduced: bool = False  # demoted or disabled: end the user's open streams
    changed: list[str] = field(default_factory=list)


def update_user(session: Session, user_id: object, changes: Mapping[str, Any], *, force: bool = False) -> UserChange:
    """Change some of role, display_name, email, locale, disabled (keys absent = unchanged)."""
    unknown = set(changes) - {"role", "display_name", "email", "locale", "disabled"}
    if unknown:
        raise AdminError(f"unknown field(s): {', '.join(sorted(unknown))}")
    user = get_user(session, user_id)
    result = UserChange(user)
    if "role" in changes:
        role = choice(changes["role"], ROLES, "role")
        if role != user.role:
            if role != "admin":
                _guard_last_admin(session, user, force)
                result.reduced = True
            user.role = role
            result.changed.append("role")
    if "display_name" in changes:
        user.display_name = clean_text(changes["display_name"], "display_name", 255, required=False)
        result.changed.append("display_name")
    if "email" in changes:
        user.email = _email(changes["email"])
        result.changed.append("email")
    if "locale" in changes:
        user.locale = choice(changes["locale"], LOCALES, "locale")
        result.changed.append("locale")
    if "disabled" in changes:
        disabled = changes["disabled"]
        if not isinstance(disabled, bool):
            raise AdminError("disabled must be true or false")
        if disabled and user.disabled_at is None:
            _guard_last_admin(session, user, force)
            user.disabled_at = utcnow()
            result.reduced = True
            result.changed.append("disabled")
        elif not disabled and user.disabled_at is not None:
            user.disabled_at = None
            result.changed.append("disabled")
    session.flush()
    return result


def set_password(session: Session, user_id: object, password: str | None) -> User:
    """Set (or with None remove) the password of a local account."""
    user = get_user(session, user_id)
    user.password_hash = None if password is None else _password_hash(password)
    session.execute(delete(LoginSession).where(LoginSession.user_id == user.id))  # old sign-ins end with the old password
    session.flush()
    return user


def delete_user(session: Session, user_id: object, *, force: bool = False) -> User:
    """Delete a user with keys, memberships, sessions and their quotas. Usage records
    stay: they carry only the pseudonym (erasure proper is `flexi privacy erase`)."""
    user = get_user(session, user_id)
    _guard_last_admin(session, user, force)
    key_ids = list(session.scalars(select(ApiKey.id).where(ApiKey.owner_id == user.id)))
    for kind, ids in (("user", [user.id]), ("key", key_ids), ("enduser", key_ids)):
        if ids:
            session.execute(delete(Quota).where(Quota.subject_kind == kind, Quota.subject_id.in_(ids)))
            session.execute(delete(QuotaCounter).where(QuotaCounter.subject_kind == kind,
                                                       QuotaCounter.subject_id.in_(ids)))
    session.delete(user)
    session.flush()
    return user
