"""Input checks and row look-ups that every administrative entity shares.

Input is validated here, not only in the HTTP layer: the CLI reaches the database directly. Text the
database could choke on (NUL and other control characters, lone surrogates) is refused with 400 before
it reaches SQL; ids outside PostgreSQL's `integer` range are "not found", never an overflow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flexi.access.admin_ops.errors import AdminError
from flexi.db.models import Base

MAX_ID = 2**31 - 1  # PostgreSQL `integer`
MAX_LIMIT = 1000
MAX_OFFSET = 10**9
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
PATTERN = re.compile(r"^[A-Za-z0-9._:/*?\[\]!@+\-]{1,255}$")  # a model name or glob

T = TypeVar("T", bound=Base)


def not_found(what: str, ref: object) -> AdminError:
    shown = CONTROL.sub("?", str(ref))[:60].encode("utf-8", "replace").decode("utf-8")
    return AdminError(f"{what} {shown} not found", 404)


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
    if CONTROL.search(text):
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


def paging(limit: int, offset: int) -> tuple[int, int]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise AdminError(f"limit must be between 1 and {MAX_LIMIT}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise AdminError(f"offset must be between 0 and {MAX_OFFSET}")
    return limit, offset


def choice(value: object, allowed: Sequence[str], field_name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        shown = value if isinstance(value, str) and len(value) <= 40 and not CONTROL.search(value) else "…"
        raise AdminError(f"invalid {field_name} {shown!r}; one of: {', '.join(allowed)}")
    return value


def limit_value(value: object, field_name: str, *, minimum: int = 0) -> int | None:
    """A limit: None (no limit) or an int in minimum … 2^31-1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_ID:
        raise AdminError(f"{field_name} must be a whole number from {minimum} to {MAX_ID}, or null for no limit")
    return value


def get_row(session: Session, model: type[T], ref: object, what: str) -> T:
    ident = valid_id(ref)
    row = session.get(model, ident) if ident is not None else None
    if row is None:
        raise not_found(what, ref)
    return row


def add_row(session: Session, row: Base, conflict: str) -> None:
    """Insert `row`; a unique-constraint clash (also a concurrent one) is a 409, not a 500."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise AdminError(conflict, 409) from None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
