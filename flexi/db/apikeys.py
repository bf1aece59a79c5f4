"""API keys: created once, stored only as a hash, checked in constant time.

A key looks like `flx_ab12cd34_<43 letters and digits>`:
- `flx_ab12cd34` is the prefix: stored in clear, unique, shown in key lists,
  logs and error messages so people can tell keys apart; it finds the row.
- the rest is the secret: 43 characters from 62 = 256 random bits from
  `secrets`. Only SHA-256 of the whole key is stored.

Why SHA-256 and not scrypt/bcrypt/argon2: slow hashes exist to make guessing
low-entropy *passwords* expensive. A 256-bit random secret cannot be guessed
at any hash speed (2^255 tries on average), so a slow hash adds no security,
only ~50-100 ms of CPU to every request, and the request path has a 1 ms
budget for authentication, policy and quotas (issue 4). This is what GitHub,
Stripe and others do for machine-generated tokens.

Keys are shown once: `create_key` returns the full key and nothing can
recover it afterwards. Functions take a Session and flush; the caller commits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from flexi.db.models import ApiKey, utcnow

KEY_PREFIX = "flx_"
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits
PREFIX_CHARS = 8
SECRET_CHARS = 43  # 43 * log2(62) = 256.1 bits
KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}([a-z0-9]{{{PREFIX_CHARS}}})_([A-Za-z0-9]{{{SECRET_CHARS}}})$")
MAX_NAME_CHARS = 100
TOUCH_INTERVAL = timedelta(minutes=1)  # write last_used_at at most this often per key


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything except its secret and hash."""

    id: int
    prefix: str
    owner_id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    scopes: list[str]
    models: list[str] | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        return cls(
            id=row.id, prefix=row.prefix, owner_id=row.owner_id, name=row.name,
            created_at=row.created_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
            last_used_at=row.last_used_at, scopes=list(row.scopes), models=None if row.models is None else list(row.models),
        )


@dataclass(frozen=True)
class CreatedKey:
    """A new key. `key` is the only copy of the secret; it is kept out of repr()
    so that logging the object cannot leak it."""

    info: KeyInfo
    key: str = field(repr=False)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def create_key(
    session: Session,
    owner_id: int,
    name: str = "",
    *,
    scopes: list[str] | None = None,
    models: list[str] | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> CreatedKey:
    """Create a key for user `owner_id`; returns the full key once."""
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"key name longer than {MAX_NAME_CHARS} characters")
    while True:  # 36^8 prefixes: a clash is rare, but the column is unique
        prefix = KEY_PREFIX + _random(PREFIX_ALPHABET, PREFIX_CHARS)
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    key = f"{prefix}_{_random(SECRET_ALPHABET, SECRET_CHARS)}"
    row = ApiKey(
        prefix=prefix, secret_hash=hash_key(key), owner_id=owner_id, name=name,
        created_at=now or utcnow(), expires_at=expires_at,
        scopes=list(scopes or []), models=None if models is None else list(models),
    )
    session.add(row)
    session.flush()
    return CreatedKey(info=KeyInfo.of(row), key=key)


def prefix_of(presented: str) -> str | None:
    """The visible prefix of a well-formed key (safe to log), else None."""
    match = KEY_PATTERN.match(presented)
    return KEY_PREFIX + match.group(1) if match else None


def verify_key(session: Session, presented: str, *, now: datetime | None = None, touch: bool = True) -> ApiKey | None:
    """The key row (owner loaded) if `presented` is a valid, unrevoked, unexpired
    key of an enabled user; else None. Anything not shaped like a key is
    refused before the database is asked. With `touch`, `last_used_at` is
    updated (at most once per TOUCH_INTERVAL; the caller commits)."""
    prefix = prefix_of(presented)
    if prefix is None:
        return None
    row = session.scalar(select(ApiKey).options(joinedload(ApiKey.owner)).where(ApiKey.prefix == prefix))
    if row is None or not hmac.compare_digest(row.secret_hash, hash_key(presented)):
        return None
    now = now or utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if row.owner.disabled_at is not None:
        return None
    if touch and (row.last_used_at is None or now - row.last_used_at >= TOUCH_INTERVAL):
        row.last_used_at = now
        session.flush()
    return row


def revoke_key(session: Session, key_id: int, *, owner_id: int | None = None, now: datetime | None = None) -> bool:
    """Revoke key `key_id` (only if it belongs to `owner_id`, when given).
    True if the key exists (revoking twice keeps the first time); False if it
    does not or is someone else's, which callers report alike (404)."""
    query = select(ApiKey).where(ApiKey.id == key_id)
    if owner_id is not None:
        query = query.where(ApiKey.owner_id == owner_id)
    row = session.scalar(query)
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.flush()
    return True


def list_keys(session: Session, owner_id: int, *, include_revoked: bool = True) -> list[KeyInfo]:
    """The keys of `owner_id`, oldest first, without secrets or hashes."""
    query = select(ApiKey).where(ApiKey.owner_id == owner_id).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [KeyInfo.of(row) for row in session.scalars(query)]
