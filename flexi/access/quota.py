"""Quotas and rate limits with race-free counters.

Limits (requests per minute, tokens per day and per week) apply to the user
(their own `quotas` row, else their role's `role_quotas` row), to the API key
and to the course a request is billed to; and to each end user of a `service`
key (kind `enduser`, subject = the key: the limits every end user of that key
gets, counted per end user's pseudonym), in addition to the key's own. Usage lives in `quota_counters`, one
row per subject and window, changed only by conditional atomic UPDATEs
(`used = used + n WHERE used + n <= limit`): two requests, two processes or two
replicas can never both take the last tokens, on SQLite (writers serialize)
and on PostgreSQL (row locks) alike.

Tokens are reserved at admission and corrected at the end:
- the reservation is the prompt's upper bound (its UTF-8 bytes + 1: a token is
  at least one byte) plus the output the request may produce, and the request's
  output is capped to what the quota has left, so a request can never spend
  more than it reserved;
- at the end the reservation is replaced by the real count (prompt + delivered
  tokens; a cancelled stream pays for the prompt a runner slot took on, if any,
  and what it delivered).
Windows are UTC: minute, day (from 00:00), week (from Monday 00:00).

A fresh install is not unlimited: a role without a `role_quotas` row gets
FLEXI_DEFAULT_ROLE_QUOTAS (students: 60 requests per minute, 500,000 tokens per
day). Defaults live in configuration, not in rows written at start, so they never
overwrite what an administrator set: a `role_quotas` row always wins, even one
with every limit empty (= unlimited), and clearing it brings the default back.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from flexi.access.principal import Principal, splits_end_users  # noqa: F401 (re-exported: the gate and tests import it here)
from flexi.db.engine import write_transaction
from flexi.db.models import Quota, QuotaCounter, RoleQuota, utcnow

WINDOWS = {"requests_per_minute": "minute", "tokens_per_day": "day", "tokens_per_week": "week"}
LIMITS_TTL = 5.0  # seconds a subject's limits are cached; admin changes in this process clear it at once


def for_end_user(limits: list[Limit], end_user: str | None) -> list[Limit]:
    """The limits of one request: a key's `enduser` limits counted for `end_user`, or dropped without one."""
    if not any(lim.subject_kind == "enduser" for lim in limits):
        return limits
    if not end_user:
        return [lim for lim in limits if lim.subject_kind != "enduser"]
    return [dataclasses.replace(lim, end_user=end_user) if lim.subject_kind == "enduser" else lim for lim in limits]


def window_start(window: str, now: datetime) -> datetime:
    now = now.astimezone(UTC)
    if window == "minute":
        return now.replace(second=0, microsecond=0)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if window == "day" else day - timedelta(days=day.weekday())


def window_end(window: str, start: datetime) -> datetime:
    return start + {"minute": timedelta(minutes=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}[window]


@dataclass(frozen=True)
class Limit:
    subject_kind: str  # user | key | course | enduser
    subject_id: int
    name: str  # requests_per_minute | tokens_per_day | tokens_per_week
    value: int
    end_user: str = ""  # kind enduser: the pseudonym of the end user it is counted for ('' = a template)

    @property
    def window(self) -> str:
        return WINDOWS[self.name]


@dataclass(frozen=True)
class RoleDefault:
    """A role's limits while no administrator set its own (FLEXI_DEFAULT_ROLE_QUOTAS)."""

    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    tokens_per_week: int | None = None


@dataclass
class QuotaRefusal(Exception):
    limit: Limit
    resets_at: datetime


@dataclass
class Reservation:
    """Tokens held for one request; `counters` are the token windows charged."""

    tokens: int = 0
    max_output: int | None = None  # cap for the request's output, None = no token quota applies
    counters: list[tuple[str, int, str, datetime, str]] = field(default_factory=list)  # kind, id, window, start, end user


class QuotaLedger:
    """Admission and settlement. Statements are built once (bound parameters
    only) and limits are cached for a few seconds: the admission path is one
    short write transaction of a read and one upsert per limited window."""

    def __init__(self, engine: Engine, role_defaults: dict[str, dict[str, int | None]] | None = None) -> None:
        self.engine = engine
        self.role_defaults = {role: RoleDefault(**values) for role, values in (role_defaults or {}).items()}
        dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        ins = dialect_insert(QuotaCounter).values(subject_kind=bindparam("k"), subject_id=bindparam("i"),
                                                  window=bindparam("w"), window_start=bindparam("s"), used=bindparam("n"),
                                                  end_user=bindparam("e"))
        self._take_stmt = ins.on_conflict_do_update(
            index_elements=[QuotaCounter.subject_kind, QuotaCounter.subject_id, QuotaCounter.window, QuotaCounter.window_start,
                            QuotaCounter.end_user],
            set_={"used": QuotaCounter.used + ins.excluded.used},
            where=QuotaCounter.used + ins.excluded.used <= bindparam("limit"),
        ).returning(QuotaCounter.used)
        self._used_stmt = select(QuotaCounter.subject_kind, QuotaCounter.subject_id, QuotaCounter.window,
                                 QuotaCounter.end_user, QuotaCounter.used).where(
            QuotaCounter.window_start.in_(bindparam("starts", expanding=True)),
            QuotaCounter.subject_id.in_(bindparam("ids", expanding=True)),
            QuotaCounter.end_user.in_(bindparam("ends", expanding=True)))  # never a whole key's end users
        self._settle_stmt = (update(QuotaCounter)
                             .where(QuotaCounter.subject_kind == bindparam("k"), QuotaCounter.subject_id == bindparam("i"),
                                    QuotaCounter.window == bindparam("w"), QuotaCounter.window_start == bindparam("s"),
                                    QuotaCounter.end_user == bindparam("e"))
                             .values(used=QuotaCounter.used + bindparam("delta")))
        self._limits: dict[tuple[Any, ...], tuple[list[Limit], float]] = {}
        # SQLite: one server process owns the file and writers take one lock. All of this process's
        # writes (admission here, usage batches in UsageWriter) go through ONE dedicated thread, so
        # they never wait for each other, and a lock held elsewhere (the CLI) stalls only that
        # thread, never the event loop. A network database (several replicas) uses the default pool.
        self.executor: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="flexi-db-writer")
            if engine.dialect.name == "sqlite" else None)

    # --- limits ----------------------------------------------------------------------
    def forget(self) -> None:
        """Drop cached limits (after an admin changed quotas in this process)."""
        self._limits.clear()

    def cached_limits(self, principal: Principal, course_id: int | None) -> list[Limit] | None:
        """The limits if known without asking the database (None = ask)."""
        if principal.user_id is None:
            return []
        cached = self._limits.get((principal.user_id, principal.role, principal.key_id, course_id))
        if cached is not None and time.monotonic() - cached[1] < LIMITS_TTL:
            return cached[0]
        return None

    def limits_for(self, conn: Connection, principal: Principal, course_id: int | None) -> list[Limit]:
        known = self.cached_limits(principal, course_id)
        if known is not None:
            return known
        cache_key = (principal.user_id, principal.role, principal.key_id, course_id)
        subjects = [("user", principal.user_id)]
        if principal.key_id is not None:
            subjects.append(("key", principal.key_id))
            if splits_end_users(principal):
                subjects.append(("enduser", principal.key_id))
        if course_id is not None:
            subjects.append(("course", course_id))
        rows = {(q.subject_kind, q.subject_id): q for q in conn.execute(select(Quota).where(
            or_(*(and_(Quota.subject_kind == k, Quota.subject_id == i) for k, i in subjects))))}
        own: Any = rows.get(("user", principal.user_id))
        if own is None:
            own = conn.execute(select(RoleQuota).where(RoleQuota.role == principal.role)).first()
        if own is None:
            own = self.role_defaults.get(principal.role)
        out: list[Limit] = []
        for kind, sid in subjects:
            source = own if kind == "user" else rows.get((kind, sid))
            if source is None:
                continue
            for name in WINDOWS:
                value = getattr(source, name)
                if value is not None:
                    out.append(Limit(kind, sid, name, int(value)))
        self._limits[cache_key] = (out, time.monotonic())
        return out

    # --- admission -------------------------------------------------------------------
    def admit(self, principal: Principal, course_id: int | None, prompt_bound: int, max_output: int,
              *, now: datetime | None = None, phase: str = "all", end_user: str | None = None) -> Reservation:
        """Count the request and reserve its tokens, or raise QuotaRefusal naming the limit hit.

        A generation is admitted in two phases around its prompt's rendering: `"rate"` before it
        (count the request per minute; refuse if a token window has less than `prompt_bound` + 1
        left, reserving nothing), `"tokens"` after it (reserve the real prompt's bound and the
        output, without counting the request again). `"all"` does both at once.
        `end_user`: the pseudonym of the key's end user the request is for; the key's `enduser` limits
        apply to exactly that end user (without one they do not apply: the key's own limits still do)."""
        now = now or utcnow()
        limits = self.cached_limits(principal, course_id)
        if limits is None:
            with self.engine.connect() as probe:
                limits = self.limits_for(probe, principal, course_id)
        limits = for_end_user(limits, end_user)
        if not limits:
            return Reservation()
        token_limits = [lim for lim in limits if lim.window != "minute"]
        rate_limits = [lim for lim in limits if lim.window == "minute"] if phase != "tokens" else []
        if not rate_limits and (not token_limits or phase == "rate"):
            if token_limits:  # a read-only check: no write transaction for it
                with self.engine.connect() as conn:
                    self._left(conn, token_limits, prompt_bound, now)
            return Reservation()
        with write_transaction(self.engine) as conn:
            # 1. requests per minute: counted at admission, never refunded
            for lim in rate_limits:
                self._take(conn, lim, 1, now)
            if not token_limits:
                return Reservation()
            # 2. tokens: cap the output to what every token window still has
            tightest, left = self._left(conn, token_limits, prompt_bound, now)
            if phase == "rate":
                return Reservation()
            output = min(max_output, left - prompt_bound)
            tokens = prompt_bound + output
            reservation = Reservation(tokens=tokens, max_output=output)
            for lim in token_limits:
                self._take(conn, lim, tokens, now)  # still conditional: another replica may have been faster
                reservation.counters.append((lim.subject_kind, lim.subject_id, lim.window, window_start(lim.window, now),
                                             lim.end_user))
            return reservation

    def _left(self, conn: Connection, token_limits: list[Limit], prompt_bound: int, now: datetime) -> tuple[Limit, int]:
        """The tightest token window and what it has left; QuotaRefusal if not even the prompt fits."""
        used = self._used(conn, token_limits, now)
        left = {lim: lim.value - used.get((lim.subject_kind, lim.subject_id, lim.window, lim.end_user), 0)
                for lim in token_limits}
        tightest = min(token_limits, key=lambda lim: left[lim])
        if left[tightest] < prompt_bound + 1:
            raise QuotaRefusal(tightest, window_end(tightest.window, window_start(tightest.window, now)))
        return tightest, left[tightest]

    def _used(self, conn: Connection, limits: list[Limit], now: datetime) -> dict[tuple[str, int, str, str], int]:
        starts = sorted({window_start(lim.window, now) for lim in limits})
        ids = sorted({lim.subject_id for lim in limits})
        ends = sorted({lim.end_user for lim in limits})
        wanted = {(lim.subject_kind, lim.subject_id, lim.window, lim.end_user) for lim in limits}
        out: dict[tuple[str, int, str, str], int] = {}
        for kind, sid, window, end, used in conn.execute(self._used_stmt, {"starts": starts, "ids": ids, "ends": ends}):
            if (kind, sid, window, end) in wanted:
                out[(kind, sid, window, end)] = int(used)
        return out

    def _take(self, conn: Connection, lim: Limit, amount: int, now: datetime) -> None:
        start = window_start(lim.window, now)
        if amount > lim.value:
            raise QuotaRefusal(lim, window_end(lim.window, start))
        row = conn.execute(self._take_stmt, {"k": lim.subject_kind, "i": lim.subject_id, "w": lim.window, "s": start,
                                             "n": amount, "limit": lim.value, "e": lim.end_user}).first()
        if row is None:  # the row exists and the condition failed: the limit is reached
            raise QuotaRefusal(lim, window_end(lim.window, start))

    # --- settlement ------------------------------------------------------------------
    def settle(self, conn: Connection, reservation: Reservation, actual_tokens: int) -> None:
        """Replace the reservation by the real count (inside the caller's transaction)."""
        delta = actual_tokens - reservation.tokens
        if not reservation.counters or delta == 0:
            return
        conn.execute(self._settle_stmt, [{"k": kind, "i": sid, "w": window, "s": start, "e": end, "delta": delta}
                                         for kind, sid, window, start, end in sorted(reservation.counters)])

    def usage_of(self, conn: Connection, kind: str, sid: int, now: datetime | None = None,
                 end_user: str = "") -> dict[str, int]:
        """Current use per window for one subject (for /me and admin views)."""
        now = now or utcnow()
        out = {}
        for name, window in WINDOWS.items():
            used = conn.scalar(select(QuotaCounter.used).where(
                QuotaCounter.subject_kind == kind, QuotaCounter.subject_id == sid, QuotaCounter.window == window,
                QuotaCounter.window_start == window_start(window, now), QuotaCounter.end_user == end_user))
            out[name] = int(used or 0)
        return out
