"""Authentication: turn a credential into a `Principal`, fast.

The hot path is one indexed read (key or session row joined with its user), so
revoking a key, disabling or demoting a user takes effect on the very next
request, also when the change came from the CLI or another replica. Group and
course memberships change rarely and are cached for a few seconds per user.
Database calls are synchronous; callers run them in a worker thread.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, and_, bindparam, select

from flexi.access.credentials import Credential
from flexi.access.principal import ADMIN, Principal
from flexi.config import Settings
from flexi.db.apikeys import hash_key, prefix_of
from flexi.db.models import ApiKey, CourseMember, Group, GroupMember, LoginSession, TermsAcceptance, User, utcnow
from flexi.db.pseudonym import pseudonymize

log = logging.getLogger("flexi.access")
MEMBERSHIP_TTL = 10.0
KEYLESS_ROLE = "service"  # the only role a key-less client may act as
TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class _Memberships:
    groups: frozenset[str]
    courses: frozenset[int]
    at: float


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Authenticator:
    def __init__(self, engine: Engine, settings: Settings, pseudonym_key: bytes) -> None:
        self.engine = engine
        self.settings = settings
        self.pseudonym_key = pseudonym_key
        self._memberships: dict[int, _Memberships] = {}
        self._terms_ok: set[tuple[int, str]] = set()
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()
        self.on_touch: Callable[[int], None] | None = None
        self._key_query = (
            select(ApiKey.id, ApiKey.secret_hash, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.scopes, ApiKey.models,
                   ApiKey.course_id, ApiKey.last_used_at, User.id, User.subject, User.pseudonym, User.role, User.locale,
                   User.disabled_at)
            .join(User, ApiKey.owner_id == User.id)
            .where(ApiKey.prefix == bindparam("prefix"))
        )  # built once: building a statement per request costs more than running it
        self._subject_query = (
            select(User.id, User.subject, User.pseudonym, User.role, User.locale, User.disabled_at)
            .where(User.subject == bindparam("subject"))
        )
        self._keyless = [(ipaddress.ip_network(c.network), c) for c in settings.keyless_clients]
        for c in settings.keyless_clients:
            if c.user is not None:  # per-end-user shares and quotas are a key's (flexi.access.principal.splits_end_users)
                log.warning("key-less client %s acts as the user %s, not one of its keys: all its end users share one "
                            "budget and one turn in the queue; map it with key = \"flx_…\" for shares per student",
                            c.network, c.user)
        self._session_query = (
            select(LoginSession.expires_at, User.id, User.subject, User.pseudonym, User.role, User.locale, User.disabled_at)
            .join(User, LoginSession.user_id == User.id)
            .where(LoginSession.token_hash == bindparam("digest"))
        )

    # --- principals --------------------------------------------------------------
    def local_principal(self) -> Principal:
        """auth=off: the machine's own user, with every right."""
        return Principal(user_id=None, subject="local", pseudonym=pseudonymize("local", self.pseudonym_key),
                         role=ADMIN, locale=self.settings.default_locale, local=True)

    def authenticate(self, credential: Credential) -> Principal | None:
        """The principal for `credential`, or None if it is not valid now."""
        if credential.kind == "key":
            return self._by_key(credential.value)
        return self._by_session(credential.value)

    def effective_role(self, subject: str, stored: str) -> str:
        return ADMIN if subject in self.settings.admins else stored

    def keyless(self, address: str) -> Principal | None:
        """The principal of a request WITHOUT a credential from `address` (the client's, behind trusted
        proxies), when FLEXI_KEYLESS_CLIENTS maps it to a service account or one of its keys; else None.
        The account is read like a key on every request: disabling it or revoking the key stops it at once."""
        if not self._keyless:
            return None
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # an IPv4 client of a dual-stack listener
        client = next((c for net, c in self._keyless if addr.version == net.version and addr in net), None)
        if client is None:
            return None
        principal = self._by_prefix(client.key) if client.key else self._by_subject(client.user or "")
        if principal is None or principal.role != KEYLESS_ROLE:
            log.warning("key-less client %s: %s %s is missing, disabled, revoked or not a service account",
                        client.network, "key" if client.key else "user", client.key or client.user)
            return None
        return principal

    def _by_subject(self, subject: str) -> Principal | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._subject_query, {"subject": subject}).first()
        if row is None or row[5] is not None:
            return None
        user_id, subject, pseudonym, role, locale, _disabled = row
        groups, courses = self._member_of(user_id)
        return Principal(user_id=user_id, subject=subject, pseudonym=pseudonym, role=self.effective_role(subject, role),
                         locale=locale, groups=groups, courses=courses)

    def _by_key(self, presented: str) -> Principal | None:
        prefix = prefix_of(presented)
        if prefix is None:
            return None
        return self._by_prefix(prefix, presented)

    def _by_prefix(self, prefix: str, presented: str | None = None) -> Principal | None:
        """The key `prefix`'s principal; with `presented`, only if it is that key's secret (None: a key-less
        client the operator mapped to this key, by address)."""
        with self.engine.connect() as conn:
            row = conn.execute(self._key_query, {"prefix": prefix}).first()
        if row is None or (presented is not None and not hmac.compare_digest(row[1], hash_key(presented))):
            return None
        (key_id, _h, revoked_at, expires_at, scopes, models, course_id, last_used, user_id, subject, pseudonym, role,
         locale, disabled_at) = row
        now = utcnow()
        if revoked_at is not None or (expires_at is not None and expires_at <= now) or disabled_at is not None:
            return None
        if last_used is None or now - last_used >= TOUCH_INTERVAL:
            self._touch(key_id)
        groups, courses = self._member_of(user_id)
        return Principal(user_id=user_id, subject=subject, pseudonym=pseudonym, role=self.effective_role(subject, role),
                         locale=locale, groups=groups, courses=courses, key_id=key_id, key_prefix=prefix,
                         key_scopes=tuple(scopes or ()), key_models=None if models is None else tuple(models),
                         key_course_id=course_id)

    def _by_session(self, token: str) -> Principal | None:
        digest = session_hash(token)
        with self.engine.connect() as conn:
            row = conn.execute(self._session_query, {"digest": digest}).first()
        if row is None:
            return None
        expires_at, user_id, subject, pseudonym, role, locale, disabled_at = row
        if expires_at <= utcnow() or disabled_at is not None:
            return None
        groups, courses = self._member_of(user_id)
        return Principal(user_id=user_id, subject=subject, pseudonym=pseudonym, role=self.effective_role(subject, role),
                         locale=locale, groups=groups, courses=courses, session=digest)

    # --- memberships, terms, last use --------------------------------------------------
    def _member_of(self, user_id: int) -> tuple[frozenset[str], frozenset[int]]:
        cached = self._memberships.get(user_id)
        if cached is not None and time.monotonic() - cached.at < MEMBERSHIP_TTL:
            return cached.groups, cached.courses
        with self.engine.connect() as conn:
            groups = frozenset(conn.scalars(select(Group.name).join(GroupMember, GroupMember.group_id == Group.id)
                                            .where(GroupMember.user_id == user_id)))
            courses = frozenset(conn.scalars(select(CourseMember.course_id).where(CourseMember.user_id == user_id)))
        self._memberships[user_id] = _Memberships(groups, courses, time.monotonic())
        return groups, courses

    def forget(self, user_id: int | None = None) -> None:
        """Drop cached memberships (after an admin change in this process)."""
        if user_id is None:
            self._memberships.clear()
            self._terms_ok.clear()
        else:
            self._memberships.pop(user_id, None)
            self._terms_ok = {(uid, v) for uid, v in self._terms_ok if uid != user_id}

    def accepted_terms(self, user_id: int, version: str) -> bool:
        if (user_id, version) in self._terms_ok:
            return True
        with self.engine.connect() as conn:
            ok = conn.scalar(select(TermsAcceptance.id).where(and_(TermsAcceptance.user_id == user_id,
                                                                   TermsAcceptance.version == version))) is not None
        if ok:
            self._terms_ok.add((user_id, version))
        return ok

    def _touch(self, key_id: int) -> None:
        """Note a key's use, at most once a minute per process; the usage writer stores it
        later, so authentication itself never writes (and never waits for a writer)."""
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(key_id, -1e9) < TOUCH_INTERVAL.total_seconds():
                return
            self._touched[key_id] = now
        if self.on_touch is not None:
            self.on_touch(key_id)

    @property
    def reads_inline(self) -> bool:
        """SQLite reads take ~0.1 ms and never wait for writers (WAL): run them on the
        event loop instead of paying a thread hop. A network database goes to a thread."""
        return self.engine.dialect.name == "sqlite"
