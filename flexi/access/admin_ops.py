"""Administration as plain database operations, shared by the REST API and the CLI.

Why one module: `/admin/…`, `/me/keys` and `flexi users|keys|groups|courses|
quotas|policies` must apply the same rules (validation, the last admin, scopes
a key may carry), so they all call these functions and only translate input
and output. Every function takes a `Session`, flushes, and leaves the commit
to the caller, so a REST request or a CLI command is one transaction.

Input is validated here, not only in the HTTP layer: the CLI reaches the
database directly. Failures raise `AdminError(message, status)` with 400
(bad input), 403, 404 (no such thing, or not yours) or 409 (conflict); the
REST layer renders it as JSON, the CLI prints it. Messages a student may read
(their own keys) carry a key into `flexi.i18n` for German/English.

Queries use bound parameters only; substring filters escape LIKE wildcards
(`%`, `_`), and text that the database could choke on (NUL and other control
characters, lone surrogates) is refused with 400 before it reaches SQL. Ids
outside PostgreSQL's `integer` range are "not found", never an overflow.

Views (`*_view`) turn rows into JSON-ready dicts and never include secrets:
no password hashes, no key hashes, keys by prefix only.
"""

from __future__ import annotations

from collections.abc import Collection

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from flexi import i18n
from flexi.access.passwords import hash_password
from flexi.access.quota import QuotaLedger
from flexi.db.apikeys import KEY_PREFIX, PREFIX_CHARS, CreatedKey, create_key, prefix_of
from flexi.db.models import (
    LoginSession,
    COURSE_ROLES,
    LOCALES,
    QUOTA_SUBJECTS,
    ROLES,
    ApiKey,
    Base,
    Course,
    CourseMember,
    Group,
    GroupMember,
    ModelPolicy,
    Quota,
    QuotaCounter,
    RoleQuota,
    User,
    utcnow,
)
from flexi.db.pseudonym import pseudonymize

SCOPES = ("inference", "account", "manage", "admin")  # account: export/erase/keys of the owner's account
ADMIN_SCOPES = ("manage", "admin")
DEFAULT_SCOPES = ("inference",)
QUOTA_FIELDS = ("requests_per_minute", "tokens_per_day", "tokens_per_week")
QUOTA_KINDS = (*QUOTA_SUBJECTS, "role")
MAX_ID = 2**31 - 1  # PostgreSQL `integer`
MAX_LIMIT = 1000
MAX_OFFSET = 10**9
MAX_KEY_DAYS = 3650
MAX_KEY_MODELS = 100
MAX_OWN_KEYS = 50  # active self-service keys per user
MAX_LIST_ITEMS = 100  # roles/groups in a policy
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PATTERN = re.compile(r"^[A-Za-z0-9._:/*?\[\]!@+\-]{1,255}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_PREFIX_REF = re.compile(rf"^{KEY_PREFIX}[a-z0-9]{{{PREFIX_CHARS}}}$")

T = TypeVar("T", bound=Base)


class AdminError(Exception):
    """A refused administrative operation: `message` (English) and HTTP `status`.
    `key`/`values` name an entry of `flexi.i18n` for a localized text."""

    def __init__(self, message: str, status: int = 400, *, key: str | None = None,
                 values: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.key = key
        self.values = dict(values or {})

    def localized(self, locale: str) -> str:
        return i18n.text(self.key, locale, **self.values) if self.key else self.message


def _msg(key: str, status: int = 400, **values: object) -> AdminError:
    return AdminError(i18n.text(key, "en", **values), status, key=key, values=values)


def _not_found(what: str, ref: object) -> AdminError:
    shown = _CONTROL.sub("?", str(ref))[:60].encode("utf-8", "replace").decode("utf-8")
    return AdminError(f"{what} {shown} not found", 404)


# --- input checks ----------------------------------------------------------------------
def clean_text(value: object, field_name: str, max_chars: int, *, allow_spaces: bool = True,
               required: bool = True) -> str | None:
    """Stripped text without control characters or lone surrogates, at most `max_chars`;
    None/empty gives None unless `required`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise AdminError(f"{field_name} must not be empty")
        return None
    if not isinstance(value, str):
        raise AdminError(f"{field_name} must be text")
    text = value.strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AdminError(f"{field_name} is not valid Unicode text") from None
    if _CONTROL.search(text):
        raise AdminError(f"{field_name} must not contain control characters")
    if not allow_spaces and any(ch.isspace() for ch in text):
        raise AdminError(f"{field_name} must not contain spaces")
    if len(text) > max_chars:
        raise AdminError(f"{field_name} is longer than {max_chars} characters")
    return text


def filter_text(value: str | None, field_name: str, max_chars: int = 255) -> str | None:
    """A search filter: like clean_text, but any other text is simply matched (bound, LIKE-escaped)."""
    return clean_text(value, field_name, max_chars, required=False)


def valid_id(value: object) -> int | None:
    """The id as int if it can exist in the database (1 … 2^31-1), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 10:
            return None
        value = int(value)
    if isinstance(value, int) and 1 <= value <= MAX_ID:
        return value
    return None


def _paging(limit: int, offset: int) -> tuple[int, int]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise AdminError(f"limit must be between 1 and {MAX_LIMIT}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise AdminError(f"offset must be between 0 and {MAX_OFFSET}")
    return limit, offset


def _choice(value: object, allowed: Sequence[str], field_name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        shown = value if isinstance(value, str) and len(value) <= 40 and not _CONTROL.search(value) else "…"
        raise AdminError(f"invalid {field_name} {shown!r}; one of: {', '.join(allowed)}")
    return value


def _count(value: object, field_name: str, *, minimum: int = 0) -> int | None:
    """A limit: None (no limit) or an int in minimum … 2^31-1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_ID:
        raise AdminError(f"{field_name} must be a whole number from {minimum} to {MAX_ID}, or null for no limit")
    return value


def _get(session: Session, model: type[T], ref: object, what: str) -> T:
    ident = valid_id(ref)
    row = session.get(model, ident) if ident is not None else None
    if row is None:
        raise _not_found(what, ref)
    return row


def _add(session: Session, row: Base, conflict: str) -> None:
    """Insert `row`; a unique-constraint clash (also a concurrent one) is a 409, not a 500."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise AdminError(conflict, 409) from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- users -------------------------------------------------------------------------------
def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id, "subject": user.subject, "pseudonym": user.pseudonym, "display_name": user.display_name,
        "email": user.email, "role": user.role, "locale": user.locale, "created_at": _iso(user.created_at),
        "disabled": user.disabled_at is not None, "disabled_at": _iso(user.disabled_at),
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
                email=_email(email), role=_choice(role, ROLES, "role"), locale=_choice(locale or "de", LOCALES, "locale"),
                password_hash=None if password is None else _password_hash(password))
    if session.scalar(select(User.id).where(User.subject == subject_text)) is not None:
        raise AdminError(f"a user with subject {subject_text!r} exists already", 409)
    _add(session, user, f"a user with subject {subject_text!r} exists already")
    return user


def list_users(session: Session, *, role: str | None = None, search: str | None = None, disabled: bool | None = None,
               limit: int = 100, offset: int = 0) -> list[User]:
    """Users by id; `search` is a case-insensitive substring of subject, display name or e-mail."""
    limit, offset = _paging(limit, offset)
    query = select(User).order_by(User.id).limit(limit).offset(offset)
    if role is not None:
        query = query.where(User.role == _choice(role, ROLES, "role"))
    if (needle := filter_text(search, "search")) is not None:
        needle = needle.lower()
        query = query.where(func.lower(User.subject).contains(needle, autoescape=True)
                            | func.lower(func.coalesce(User.display_name, "")).contains(needle, autoescape=True)
                            | func.lower(func.coalesce(User.email, "")).contains(needle, autoescape=True))
    if disabled is not None:
        query = query.where(User.disabled_at.is_not(None) if disabled else User.disabled_at.is_(None))
    return list(session.scalars(query))


def get_user(session: Session, user_id: object) -> User:
    return _get(session, User, user_id, "user")


def find_user(session: Session, ref: str) -> User:
    """A user by subject, else by numeric id (the CLI's USER argument)."""
    text = clean_text(ref, "user", 255)
    user = session.scalar(select(User).where(User.subject == text))
    if user is None and (ident := valid_id(text)) is not None:
        user = session.get(User, ident)
    if user is None:
        raise _not_found("user", text)
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
        role = _choice(changes["role"], ROLES, "role")
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
        user.locale = _choice(changes["locale"], LOCALES, "locale")
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
    for kind, ids in (("user", [user.id]), ("key", key_ids)):
        if ids:
            session.execute(delete(Quota).where(Quota.subject_kind == kind, Quota.subject_id.in_(ids)))
            session.execute(delete(QuotaCounter).where(QuotaCounter.subject_kind == kind,
                                                       QuotaCounter.subject_id.in_(ids)))
    session.delete(user)
    session.flush()
    return user


# --- groups and courses ----------------------------------------------------------------------
def group_view(group: Group, members: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": group.id, "name": group.name, "title": group.title}
    if members is not None:
        out["members"] = members
    return out


def course_view(course: Course, members: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": course.id, "name": course.name, "title": course.title}
    if members is not None:
        out["members"] = members
    return out


def create_group(session: Session, name: str, title: str | None = None) -> Group:
    group = Group(name=clean_text(name, "name", 100), title=clean_text(title, "title", 255, required=False))
    if session.scalar(select(Group.id).where(Group.name == group.name)) is not None:
        raise AdminError(f"a group named {group.name!r} exists already", 409)
    _add(session, group, f"a group named {group.name!r} exists already")
    return group


def create_course(session: Session, name: str, title: str | None = None) -> Course:
    course = Course(name=clean_text(name, "name", 100), title=clean_text(title, "title", 255, required=False))
    if session.scalar(select(Course.id).where(Course.name == course.name)) is not None:
        raise AdminError(f"a course named {course.name!r} exists already", 409)
    _add(session, course, f"a course named {course.name!r} exists already")
    return course


def list_groups(session: Session, *, search: str | None = None, limit: int = 100,
                offset: int = 0) -> list[tuple[Group, int]]:
    """Groups by name with their member counts; `search`: substring of name or title."""
    limit, offset = _paging(limit, offset)
    count = select(func.count()).where(GroupMember.group_id == Group.id).correlate(Group).scalar_subquery()
    query = select(Group, count).order_by(Group.name).limit(limit).offset(offset)
    if (needle := filter_text(search, "search")) is not None:
        needle = needle.lower()
        query = query.where(func.lower(Group.name).contains(needle, autoescape=True)
                            | func.lower(func.coalesce(Group.title, "")).contains(needle, autoescape=True))
    return [(g, int(n)) for g, n in session.execute(query)]


def list_courses(session: Session, *, search: str | None = None, limit: int = 100,
                 offset: int = 0) -> list[tuple[Course, int]]:
    limit, offset = _paging(limit, offset)
    count = select(func.count()).where(CourseMember.course_id == Course.id).correlate(Course).scalar_subquery()
    query = select(Course, count).order_by(Course.name).limit(limit).offset(offset)
    if (needle := filter_text(search, "search")) is not None:
        needle = needle.lower()
        query = query.where(func.lower(Course.name).contains(needle, autoescape=True)
                            | func.lower(func.coalesce(Course.title, "")).contains(needle, autoescape=True))
    return [(c, int(n)) for c, n in session.execute(query)]


def get_group(session: Session, group_id: object) -> Group:
    return _get(session, Group, group_id, "group")


def get_course(session: Session, course_id: object) -> Course:
    return _get(session, Course, course_id, "course")


def find_group(session: Session, ref: str) -> Group:
    """A group by name, else by numeric id (the CLI's GROUP argument)."""
    text = clean_text(ref, "group", 100)
    group = session.scalar(select(Group).where(Group.name == text))
    if group is None and (ident := valid_id(text)) is not None:
        group = session.get(Group, ident)
    if group is None:
        raise _not_found("group", text)
    return group


def find_course(session: Session, ref: str) -> Course:
    text = clean_text(ref, "course", 100)
    course = session.scalar(select(Course).where(Course.name == text))
    if course is None and (ident := valid_id(text)) is not None:
        course = session.get(Course, ident)
    if course is None:
        raise _not_found("course", text)
    return course


def delete_group(session: Session, group_id: object) -> Group:
    group = get_group(session, group_id)
    session.delete(group)
    session.flush()
    return group


def delete_course(session: Session, course_id: object) -> Course:
    """Delete a course; its keys stay (billed to nobody's course), its quota goes."""
    course = get_course(session, course_id)
    session.execute(delete(Quota).where(Quota.subject_kind == "course", Quota.subject_id == course.id))
    session.execute(delete(QuotaCounter).where(QuotaCounter.subject_kind == "course",
                                               QuotaCounter.subject_id == course.id))
    session.delete(course)
    session.flush()
    return course


def group_members(session: Session, group_id: object) -> list[User]:
    group = get_group(session, group_id)
    return list(session.scalars(select(User).join(GroupMember, GroupMember.user_id == User.id)
                                .where(GroupMember.group_id == group.id).order_by(User.subject)))


def course_members(session: Session, course_id: object) -> list[tuple[User, str]]:
    course = get_course(session, course_id)
    return [(u, r) for u, r in session.execute(
        select(User, CourseMember.role).join(CourseMember, CourseMember.user_id == User.id)
        .where(CourseMember.course_id == course.id).order_by(User.subject))]


def add_group_member(session: Session, group_id: object, user_id: object) -> bool:
    """Add a member; False if they were one already."""
    group, user = get_group(session, group_id), get_user(session, user_id)
    if session.get(GroupMember, (group.id, user.id)) is not None:
        return False
    _add(session, GroupMember(group_id=group.id, user_id=user.id), "already a member")
    return True


def remove_group_member(session: Session, group_id: object, user_id: object) -> None:
    group, user = get_group(session, group_id), get_user(session, user_id)
    row = session.get(GroupMember, (group.id, user.id))
    if row is None:
        raise AdminError(f"{user.subject} is not a member of group {group.name}", 404)
    session.delete(row)
    session.flush()


def set_course_member(session: Session, course_id: object, user_id: object, role: str = "student") -> bool:
    """Add a member with a course role, or change their course role; True if newly added."""
    course, user = get_course(session, course_id), get_user(session, user_id)
    role = _choice(role, COURSE_ROLES, "course role")
    row = session.get(CourseMember, (course.id, user.id))
    if row is not None:
        row.role = role
        session.flush()
        return False
    _add(session, CourseMember(course_id=course.id, user_id=user.id, role=role), "already a member")
    return True


def remove_course_member(session: Session, course_id: object, user_id: object) -> None:
    course, user = get_course(session, course_id), get_user(session, user_id)
    row = session.get(CourseMember, (course.id, user.id))
    if row is None:
        raise AdminError(f"{user.subject} is not a member of course {course.name}", 404)
    session.delete(row)
    session.flush()


# --- API keys ----------------------------------------------------------------------------------
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
        "course_id": row.course_id, "created_at": _iso(row.created_at), "expires_at": _iso(row.expires_at),
        "revoked_at": _iso(row.revoked_at), "last_used_at": _iso(row.last_used_at), "state": key_state(row, now),
    }


def parse_expiry(value: object, now: datetime | None = None) -> datetime | None:
    """None, a number of days (int or digits), or an ISO date/datetime. A date means the key
    is valid through that day (UTC); a datetime without zone is UTC."""
    now = now or utcnow()
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    shown = str(value)[:40]
    if isinstance(value, bool):
        raise _msg("key_expiry_invalid", value=shown)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()[:6])
    if isinstance(value, int):
        if not 1 <= value <= MAX_KEY_DAYS:
            raise _msg("key_expiry_invalid", value=shown)
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
            raise _msg("key_expiry_invalid", value=shown) from None
    else:
        raise _msg("key_expiry_invalid", value=shown)
    at = at.astimezone(UTC)
    if at <= now:
        raise _msg("key_expiry_past", value=shown)
    if at > now + timedelta(days=MAX_KEY_DAYS + 1):
        raise _msg("key_expiry_invalid", value=shown)
    return at


def expiry_from(days: int | None, at: str | None) -> object:
    """The one expiry of a request that may give days or a date, not both."""
    if days is not None and at is not None:
        raise _msg("key_expiry_both")
    return days if days is not None else at


def _scopes(scopes: Sequence[str] | None) -> list[str]:
    if scopes is None:
        return list(DEFAULT_SCOPES)
    if isinstance(scopes, str):
        scopes = [s for s in scopes.split(",")]
    out: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or scope.strip() not in SCOPES:
            shown = scope.strip()[:40] if isinstance(scope, str) and not _CONTROL.search(scope) else "?"
            raise _msg("key_scope_unknown", scope=repr(shown))
        if scope.strip() not in out:
            out.append(scope.strip())
    if not out:
        raise _msg("key_scopes_empty")
    return out


def model_patterns(models: Sequence[str] | None) -> list[str] | None:
    """A key's or policy's model list: None (no restriction) or 1…100 names/globs."""
    if models is None:
        return None
    if isinstance(models, str) or not 1 <= len(models) <= MAX_KEY_MODELS:
        raise _msg("key_models_invalid", limit=MAX_KEY_MODELS)
    out: list[str] = []
    for model in models:
        if not isinstance(model, str) or not _PATTERN.match(model.strip()):
            raise _msg("key_models_invalid", limit=MAX_KEY_MODELS)
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
        raise _msg("key_owner_disabled", 409)
    label = "" if name is None else name
    if not isinstance(label, str) or len(label.strip()) > 100 or _CONTROL.search(label):
        raise _msg("key_name_invalid", limit=100)
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        raise _msg("key_name_invalid", limit=100) from None
    chosen = _scopes(scopes)
    for scope in chosen:
        if scope in ADMIN_SCOPES and owner.role != "admin" and owner.subject not in admins:
            raise _msg("key_scope_owner", scope=scope)
    patterns = model_patterns(models)
    expires_at = parse_expiry(expires, now)
    course: int | None = None
    if course_id is not None:
        ident = valid_id(course_id)
        found = session.get(Course, ident) if ident is not None else None
        member = found is not None and (not require_membership or session.get(CourseMember, (found.id, owner.id)) is not None)
        if not member:
            raise _msg("course_unknown", 404, course=str(course_id)[:40])
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
    limit, offset = _paging(limit, offset)
    query = select(ApiKey).options(joinedload(ApiKey.owner)).order_by(ApiKey.id).limit(limit).offset(offset)
    if owner_id is not None:
        ident = valid_id(owner_id)
        if ident is None:
            return []
        query = query.where(ApiKey.owner_id == ident)
    now = utcnow()
    if state not in (None, "all"):
        state = _choice(state, ("active", "revoked", "expired", "all"), "state")
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
        raise _msg("key_not_found", 404, key_id=str(key_id)[:20])
    return row


def find_api_key(session: Session, ref: str) -> ApiKey:
    """A key by id or prefix (the CLI's KEY argument). A full key pasted by mistake is
    reduced to its prefix, so it is never echoed."""
    text = (ref or "").strip()
    prefix = prefix_of(text) or (text if _PREFIX_REF.match(text) else None)
    if prefix is not None:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None:
            raise _msg("key_not_found", 404, key_id=prefix)
        return row
    if valid_id(text) is None:
        raise _msg("key_not_found", 404, key_id="?")
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


# --- quotas ------------------------------------------------------------------------------------
def _quota_subject(session: Session, kind: str, subject: object) -> tuple[str, int | str, str]:
    """(kind, id or role, label) for an existing subject; 404 if it does not exist."""
    kind = _choice(kind, QUOTA_KINDS, "quota subject kind")
    if kind == "role":
        role = _choice(subject, ROLES, "role")
        return kind, role, role
    model: type[Base] = {"user": User, "key": ApiKey, "course": Course}[kind]
    row = _get(session, model, subject, kind)
    label = {"user": lambda r: r.subject, "key": lambda r: r.prefix, "course": lambda r: r.name}[kind](row)
    return kind, row.id, label  # type: ignore[attr-defined]


def _quota_label(session: Session, kind: str, sid: int) -> str | None:
    if kind == "user":
        return session.scalar(select(User.subject).where(User.id == sid))
    if kind == "key":
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
    checked = {name: _count(value, name) for name, value in values.items()}
    kind, sid, label = _quota_subject(session, kind, subject)
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
        kind = _choice(kind, QUOTA_KINDS, "quota subject kind")
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


# --- model policies ------------------------------------------------------------------------------
def policy_view(row: ModelPolicy) -> dict[str, Any]:
    return {"id": row.id, "pattern": row.pattern,
            "allowed_roles": None if row.allowed_roles is None else list(row.allowed_roles),
            "allowed_groups": None if row.allowed_groups is None else list(row.allowed_groups),
            "max_context": row.max_context, "max_output": row.max_output}


def _pattern(value: object) -> str:
    if not isinstance(value, str) or not _PATTERN.match(value.strip()):
        raise AdminError("pattern must be a model name or glob (letters, digits and . _ : / * ? [ ] ! @ + -), "
                         "at most 255 characters")
    return value.strip()


def _role_list(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) > MAX_LIST_ITEMS:
        raise AdminError("allowed_roles must be a list of roles or null")
    out: list[str] = []
    for role in value:
        role = _choice(role, ROLES, "role")
        if role not in out:
            out.append(role)
    return out


def _group_list(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) > MAX_LIST_ITEMS:
        raise AdminError("allowed_groups must be a list of group names or null")
    out: list[str] = []
    for name in value:
        text = clean_text(name, "group name", 100)
        if text not in out:
            out.append(text)  # type: ignore[arg-type]
    return out


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
            setattr(row, name, _count(changes[name], name, minimum=1))


def create_policy(session: Session, pattern: str, **fields: Any) -> ModelPolicy:
    row = ModelPolicy(pattern=_pattern(pattern))
    _apply_policy(row, fields)
    if session.scalar(select(ModelPolicy.id).where(ModelPolicy.pattern == row.pattern)) is not None:
        raise AdminError(f"a policy for {row.pattern!r} exists already", 409)
    _add(session, row, f"a policy for {row.pattern!r} exists already")
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
    return _get(session, ModelPolicy, policy_id, "policy")


def find_policy(session: Session, ref: str) -> ModelPolicy:
    """A policy by pattern, else by numeric id."""
    text = (ref or "").strip()
    row = session.scalar(select(ModelPolicy).where(ModelPolicy.pattern == text)) if _PATTERN.match(text) else None
    if row is None and (ident := valid_id(text)) is not None:
        row = session.get(ModelPolicy, ident)
    if row is None:
        raise _not_found("policy", text[:255] if not _CONTROL.search(text) else "?")
    return row


def delete_policy(session: Session, policy_id: object) -> ModelPolicy:
    row = get_policy(session, policy_id)
    session.delete(row)
    session.flush()
    return row
