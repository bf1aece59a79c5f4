"""Per-end-user limits of a service key (quota subject kind `enduser`), on SQLite and PostgreSQL: each end
user of the key gets the key's `enduser` limits for themself, the key's own limits still apply to all of
them together, and concurrent admissions of one end user never overspend."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from flexi.access.principal import Principal
from flexi.access.quota import QuotaLedger, QuotaRefusal, for_end_user, splits_end_users
from flexi.db.engine import write_transaction
from flexi.db.models import Quota, QuotaCounter, User

NOW = datetime(2026, 11, 25, 14, 30, 15, tzinfo=UTC)
KEY = 7


def _principal(db: Engine, role: str = "service", subject: str = "moodle") -> Principal:
    with Session(db) as s:
        user = User(subject=subject, pseudonym=subject.ljust(64, "0"), role=role)
        s.add(user)
        s.commit()
        return Principal(user_id=user.id, subject=subject, pseudonym=user.pseudonym, role=role, locale="en", key_id=KEY)


def _quota(db: Engine, kind: str, sid: int, **limits: int) -> None:
    with Session(db) as s:
        s.add(Quota(subject_kind=kind, subject_id=sid, **limits))
        s.commit()


def _counters(db: Engine, window: str) -> dict[tuple[str, str], int]:
    with Session(db) as s:
        rows = s.execute(select(QuotaCounter.subject_kind, QuotaCounter.end_user, QuotaCounter.used)
                         .where(QuotaCounter.window == window))
        return {(kind, end): used for kind, end, used in rows}


def test_each_end_user_has_their_own_share_and_the_key_limit_still_applies(db: Engine) -> None:
    moodle = _principal(db)
    _quota(db, "enduser", KEY, tokens_per_day=100, requests_per_minute=3)
    _quota(db, "key", KEY, tokens_per_day=250)
    ledger = QuotaLedger(db)
    a = ledger.admit(moodle, None, 30, 500, now=NOW, end_user="a" * 64)
    b = ledger.admit(moodle, None, 30, 500, now=NOW, end_user="b" * 64)
    assert (a.max_output, b.max_output) == (70, 70)  # each end user's 100, not one shared 100
    with pytest.raises(QuotaRefusal) as refused:  # a's day is used up ...
        ledger.admit(moodle, None, 1, 1, now=NOW, end_user="a" * 64)
    assert (refused.value.limit.subject_kind, refused.value.limit.name) == ("enduser", "tokens_per_day")
    c = ledger.admit(moodle, None, 10, 500, now=NOW, end_user="c" * 64)  # ... c goes on, capped by the key's 250
    assert c.max_output == 40
    with pytest.raises(QuotaRefusal) as refused:
        ledger.admit(moodle, None, 1, 1, now=NOW, end_user="d" * 64)
    assert refused.value.limit.subject_kind == "key"
    assert _counters(db, "day") == {("key", ""): 250, ("enduser", "a" * 64): 100, ("enduser", "b" * 64): 100,
                                    ("enduser", "c" * 64): 50}
    with write_transaction(db) as conn:  # settlement corrects exactly the end user's and the key's counters
        ledger.settle(conn, a, 12)
    assert _counters(db, "day")[("enduser", "a" * 64)] == 12 and _counters(db, "day")[("key", "")] == 162
    assert ledger.usage_of(db.connect(), "key", KEY, NOW)["tokens_per_day"] == 162  # the key's own row only


def test_rate_limit_per_end_user(db: Engine) -> None:
    moodle = _principal(db)
    _quota(db, "enduser", KEY, requests_per_minute=2)
    ledger = QuotaLedger(db)
    for _ in range(2):
        ledger.admit(moodle, None, 1, 1, now=NOW, end_user="a" * 64)
    with pytest.raises(QuotaRefusal) as refused:
        ledger.admit(moodle, None, 1, 1, now=NOW, end_user="a" * 64)
    assert (refused.value.limit.subject_kind, refused.value.limit.name) == ("enduser", "requests_per_minute")
    ledger.admit(moodle, None, 1, 1, now=NOW, end_user="b" * 64)
    ledger.admit(moodle, None, 1, 1, now=NOW.replace(minute=31), end_user="a" * 64)  # a new minute


def test_without_an_end_user_only_the_keys_own_limits_apply(db: Engine) -> None:
    moodle = _principal(db)
    _quota(db, "enduser", KEY, tokens_per_day=10)
    ledger = QuotaLedger(db)
    assert ledger.admit(moodle, None, 30, 500, now=NOW).max_output is None  # no `user`: no end-user share
    assert _counters(db, "day") == {}


def test_only_service_keys_split(db: Engine) -> None:
    """A student's key with an `enduser` row (set while its owner was a service, say) gets nothing from it: the
    end-user limits are neither applied nor a way around the student's own limits."""
    student = _principal(db, role="student", subject="stu")
    assert not splits_end_users(student) and splits_end_users(dataclasses.replace(student, role="service"))
    assert not splits_end_users(dataclasses.replace(student, role="service", key_id=None))  # a browser session
    _quota(db, "enduser", KEY, tokens_per_day=10)
    _quota(db, "user", student.user_id, tokens_per_day=100)
    ledger = QuotaLedger(db)
    r = ledger.admit(student, None, 30, 500, now=NOW, end_user="a" * 64)
    assert r.max_output == 70 and [c[0] for c in r.counters] == ["user"]


def test_for_end_user_fills_only_enduser_limits() -> None:
    from flexi.access.quota import Limit

    limits = [Limit("key", 1, "tokens_per_day", 5), Limit("enduser", 1, "tokens_per_day", 3)]
    assert for_end_user(limits, None) == limits[:1]
    assert for_end_user(limits, "x") == [limits[0], Limit("enduser", 1, "tokens_per_day", 3, "x")]
    assert for_end_user(limits[:1], "x") == limits[:1]


def test_concurrent_admissions_of_one_end_user_never_overspend(db: Engine) -> None:
    """30 threads, three end users, 10 each racing for their 300-token day: each end user gets exactly 3
    reservations of 100 tokens, never more, whatever the interleaving."""
    moodle = _principal(db)
    _quota(db, "enduser", KEY, tokens_per_day=300)
    ledger = QuotaLedger(db)
    granted: dict[str, list[int]] = {u: [] for u in "abc"}
    errors: list[BaseException] = []
    start = threading.Barrier(30)

    def worker(who: str) -> None:
        start.wait()
        try:
            granted[who].append(ledger.admit(moodle, None, 20, 80, now=NOW, end_user=who * 64).tokens)
        except QuotaRefusal:
            pass
        except BaseException as exc:  # noqa: BLE001 - surface anything else
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(who,)) for who in "abc" for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {who: len(g) for who, g in granted.items()} == {"a": 3, "b": 3, "c": 3}
    assert _counters(db, "day") == {("enduser", who * 64): 300 for who in "abc"}
