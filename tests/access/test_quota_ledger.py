"""The quota ledger on SQLite and PostgreSQL: limits, windows, reservation and
settlement, and no overspending when many threads admit at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from flexi.access.principal import Principal
from flexi.access.quota import QuotaLedger, QuotaRefusal, window_end, window_start
from flexi.db.engine import write_transaction
from flexi.db.models import Quota, QuotaCounter, RoleQuota, User

NOW = datetime(2026, 11, 25, 14, 30, 15, tzinfo=UTC)  # a Wednesday


def _user(db: Engine, subject: str = "u1", role: str = "student") -> Principal:
    with Session(db) as s:
        user = User(subject=subject, pseudonym=subject.ljust(64, "0"), role=role)
        s.add(user)
        s.commit()
        return Principal(user_id=user.id, subject=subject, pseudonym=user.pseudonym, role=role, locale="en")


def _quota(db: Engine, kind: str, sid: int, **limits: int) -> None:
    with Session(db) as s:
        s.add(Quota(subject_kind=kind, subject_id=sid, **limits))
        s.commit()


def _used(db: Engine, window: str) -> int:
    with Session(db) as s:
        return sum(s.scalars(select(QuotaCounter.used).where(QuotaCounter.window == window)))


def test_windows_are_utc_minute_day_and_monday_week() -> None:
    assert window_start("minute", NOW) == datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
    assert window_start("day", NOW) == datetime(2026, 11, 25, tzinfo=UTC)
    assert window_start("week", NOW) == datetime(2026, 11, 23, tzinfo=UTC)
    assert window_end("week", window_start("week", NOW)) == datetime(2026, 11, 30, tzinfo=UTC)


def test_no_quota_means_no_counting(db: Engine) -> None:
    p = _user(db)
    reservation = QuotaLedger(db).admit(p, None, 10, 100, now=NOW)
    assert reservation.tokens == 0 and reservation.max_output is None
    assert _used(db, "day") == 0


def test_output_is_capped_to_what_is_left_and_settled_to_the_real_count(db: Engine) -> None:
    p = _user(db)
    _quota(db, "user", p.user_id, tokens_per_day=100)
    ledger = QuotaLedger(db)
    r = ledger.admit(p, None, 30, 500, now=NOW)
    assert (r.tokens, r.max_output) == (100, 70)  # all that is left, output capped to 70
    with pytest.raises(QuotaRefusal) as refused:
        ledger.admit(p, None, 1, 1, now=NOW)
    assert refused.value.limit.name == "tokens_per_day"
    assert refused.value.resets_at == datetime(2026, 11, 26, tzinfo=UTC)
    with write_transaction(db) as conn:
        ledger.settle(conn, r, 12)  # the request really used 12 tokens
    assert _used(db, "day") == 12
    assert ledger.admit(p, None, 10, 50, now=NOW).max_output == 50


def test_role_quota_applies_without_an_own_row_and_own_row_wins(db: Engine) -> None:
    student, other = _user(db, "s1"), _user(db, "s2")
    with Session(db) as s:
        s.add(RoleQuota(role="student", requests_per_minute=1))
        s.commit()
    _quota(db, "user", other.user_id, requests_per_minute=5)
    ledger = QuotaLedger(db)
    ledger.admit(student, None, 1, 1, now=NOW)
    with pytest.raises(QuotaRefusal) as refused:
        ledger.admit(student, None, 1, 1, now=NOW)
    assert refused.value.limit.name == "requests_per_minute" and refused.value.limit.subject_kind == "user"
    for _ in range(5):
        ledger.admit(other, None, 1, 1, now=NOW)
    # next minute: a fresh window
    ledger.admit(student, None, 1, 1, now=NOW.replace(minute=31))


def test_course_and_key_limits_apply_alongside(db: Engine) -> None:
    p = _user(db)
    from dataclasses import replace

    with_key = replace(p, key_id=7)
    _quota(db, "key", 7, tokens_per_week=50)
    _quota(db, "course", 3, tokens_per_day=20)
    ledger = QuotaLedger(db)
    r = ledger.admit(with_key, 3, 5, 100, now=NOW)
    assert r.max_output == 15 and len(r.counters) == 2  # the course's 20 is the tighter
    with pytest.raises(QuotaRefusal) as refused:
        ledger.admit(with_key, 3, 5, 100, now=NOW)
    assert refused.value.limit.subject_kind == "course"
    assert ledger.admit(with_key, None, 5, 100, now=NOW).max_output == 25  # the key's week: 50 - 20 - 5


def test_concurrent_admissions_never_overspend(db: Engine) -> None:
    """40 threads race for a 1,000-token day: reservations never exceed it."""
    p = _user(db)
    _quota(db, "user", p.user_id, tokens_per_day=1000, requests_per_minute=30)
    ledger = QuotaLedger(db)
    granted: list[int] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(40)

    def worker() -> None:
        start.wait()
        try:
            granted.append(ledger.admit(p, None, 20, 80, now=NOW).tokens)
        except QuotaRefusal as exc:
            refused.append(exc.limit.name)
        except BaseException as exc:  # noqa: BLE001 - surface anything else
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(granted) <= 1000 and sum(granted) == _used(db, "day")
    assert len(granted) == 10  # 10 × 100 tokens fit exactly
    assert _used(db, "minute") <= 30 and len(refused) == 30
