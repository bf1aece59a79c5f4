"""Quotas and rate limits with race-free counters.

Limits (requests per minute, tokens per day and per week) apply to the user
(their own `quotas` row, else their role's `role_quotas` row), to the API key
and to the course a request is billed to. Usage lives in `quota_counters`, one
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
  tokens; a cancelled stream pays only for what it delivered).
Windows are UTC: minute, day (from 00:00), week (from Monday 00:00).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from flexi.access.principal import Principal
from flexi.db.engine import write_transaction
from flexi.db.models import Quota, QuotaCounter, RoleQuota, utcnow

WINDOWS = {"requests_per_minute": "minute", "tokens_per_day": "day", "tokens_per_week": "week"}


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
    subject_kind: str  # user | key | course
    subject_id: int
    name: str  # requests_per_minute | tokens_per_day | tokens_per_week
    value: int

    @property
    def window(self) -> str:
        return WINDOWS[self.name]


@dataclass
class QuotaRefusal(Exception):
    limit: Limit
    resets_at: datetime


@dataclass
class Reservation:
    """Tokens held for one request; `counters` are the token windows charged."""

    tokens: int = 0
    max_output: int | None = None  # cap for the request's output, None = no token quota applies
    counters: list[tuple[str, int, str, datetime]] = field(default_factory=list)


class QuotaLedger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # --- limits ----------------------------------------------------------------------
    def limits_for(self, conn: Connection, principal: Principal, course_id: int | None) -> list[Limit]:
        if principal.user_id is None:
            return []
        subjects = [("user", principal.user_id)]
        if principal.key_id is not None:
            subjects.append(("key", principal.key_id))
        if course_id is not None:
            subjects.append(("course", course_id))
        rows = {(q.subject_kind, q.subject_id): q for q in conn.execute(select(Quota).where(
            or_(*(and_(Quota.subject_kind == k, Quota.subject_id == i) for k, i in subjects))))}
        own: Any = rows.get(("user", principal.user_id))
        if own is None:
            own = conn.execute(select(RoleQuota).where(RoleQuota.role == principal.role)).first()
        out: list[Limit] = []
        for kind, sid in subjects:
            source = own if kind == "user" else rows.get((kind, sid))
            if source is None:
                continue
            for name in WINDOWS:
                value = getattr(source, name)
                if value is not None:
                    out.append(Limit(kind, sid, name, int(value)))
        return out

    # --- admission -------------------------------------------------------------------
    def admit(self, principal: Principal, course_id: int | None, prompt_bound: int, max_output: int,
              *, now: datetime | None = None) -> Reservation:
        """Count the request and reserve its tokens, or raise QuotaRefusal naming the limit hit."""
        now = now or utcnow()
        with write_transaction(self.engine) as conn:
            limits = self.limits_for(conn, principal, course_id)
            if not limits:
                return Reservation()
            token_limits = [lim for lim in limits if lim.window != "minute"]
            # 1. requests per minute: counted at admission, never refunded
            for lim in limits:
                if lim.window == "minute":
                    self._take(conn, lim, 1, now)
            # 2. tokens: cap the output to what every token window still has
            reservation = Reservation()
            if token_limits:
                left = min(lim.value - self._used(conn, lim, now) for lim in token_limits)
                if left < prompt_bound + 1:
                    worst = min(token_limits, key=lambda lim: lim.value - self._used(conn, lim, now))
                    raise QuotaRefusal(worst, window_end(worst.window, window_start(worst.window, now)))
                output = min(max_output, left - prompt_bound)
                tokens = prompt_bound + output
                for lim in token_limits:
                    self._take(conn, lim, tokens, now)
                    reservation.counters.append((lim.subject_kind, lim.subject_id, lim.window, window_start(lim.window, now)))
                reservation.tokens, reservation.max_output = tokens, output
            return reservation

    def _ensure(self, conn: Connection, lim: Limit, start: datetime) -> None:
        stmt = self._insert(QuotaCounter).values(subject_kind=lim.subject_kind, subject_id=lim.subject_id,
                                                 window=lim.window, window_start=start, used=0)
        conn.execute(stmt.on_conflict_do_nothing())

    def _where(self, kind: str, sid: int, window: str, start: datetime):  # type: ignore[no-untyped-def]
        return and_(QuotaCounter.subject_kind == kind, QuotaCounter.subject_id == sid,
                    QuotaCounter.window == window, QuotaCounter.window_start == start)

    def _used(self, conn: Connection, lim: Limit, now: datetime) -> int:
        start = window_start(lim.window, now)
        used = conn.scalar(select(QuotaCounter.used).where(self._where(lim.subject_kind, lim.subject_id, lim.window, start)))
        return int(used or 0)

    def _take(self, conn: Connection, lim: Limit, amount: int, now: datetime) -> None:
        start = window_start(lim.window, now)
        self._ensure(conn, lim, start)
        result = conn.execute(update(QuotaCounter)
                              .where(self._where(lim.subject_kind, lim.subject_id, lim.window, start),
                                     QuotaCounter.used + amount <= lim.value)
                              .values(used=QuotaCounter.used + amount))
        if result.rowcount != 1:
            raise QuotaRefusal(lim, window_end(lim.window, start))

    # --- settlement ------------------------------------------------------------------
    def settle(self, conn: Connection, reservation: Reservation, actual_tokens: int) -> None:
        """Replace the reservation by the real count (inside the caller's transaction)."""
        delta = actual_tokens - reservation.tokens
        if not reservation.counters or delta == 0:
            return
        for kind, sid, window, start in reservation.counters:
            conn.execute(update(QuotaCounter).where(self._where(kind, sid, window, start))
                         .values(used=QuotaCounter.used + delta))

    def usage_of(self, conn: Connection, kind: str, sid: int, now: datetime | None = None) -> dict[str, int]:
        """Current use per window for one subject (for /me and admin views)."""
        now = now or utcnow()
        out = {}
        for name, window in WINDOWS.items():
            used = conn.scalar(select(QuotaCounter.used).where(self._where(kind, sid, window, window_start(window, now))))
            out[name] = int(used or 0)
        return out
