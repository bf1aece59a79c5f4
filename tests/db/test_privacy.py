"""Export, erasure and retention on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, func, select

from flexi.access.privacy import ERASED_PREFIX, erase_user, export_user, purge_expired
from flexi.access.report import backends, processing_report
from flexi.config import load_settings
from flexi.db.apikeys import create_key
from flexi.db.engine import session_factory
from flexi.db.models import (
    ApiKey,
    ContentRecord,
    Course,
    CourseMember,
    Group,
    GroupMember,
    LoginSession,
    QuotaCounter,
    TermsAcceptance,
    UsageRecord,
    User,
    utcnow,
)


def _people(db: Engine) -> tuple[int, int]:
    with session_factory(db)() as s:
        alice = User(subject="alice@uni", pseudonym="a" * 64, role="student", display_name="Alice", email="a@uni")
        bob = User(subject="bob@uni", pseudonym="b" * 64, role="student")
        s.add_all([alice, bob])
        s.flush()
        group, course = Group(name="staff"), Course(name="ml-101")
        s.add_all([group, course])
        s.flush()
        s.add_all([GroupMember(group_id=group.id, user_id=alice.id), CourseMember(course_id=course.id, user_id=alice.id)])
        create_key(s, alice.id, "laptop")
        create_key(s, bob.id, "bob's")
        s.add(TermsAcceptance(user_id=alice.id, version="2026-1"))
        s.add(LoginSession(token_hash="c" * 64, user_id=alice.id, expires_at=utcnow() + timedelta(hours=1)))
        for pseudonym, tokens in (("a" * 64, 10), ("a" * 64, 20), ("b" * 64, 5)):
            s.add(UsageRecord(user_pseudonym=pseudonym, model="m", endpoint="/api/chat", prompt_tokens=tokens,
                              completion_tokens=1))
        s.add(ContentRecord(user_pseudonym="a" * 64, purpose="study", model="m", endpoint="/api/chat",
                            prompt="secret question", response="answer"))
        s.commit()
        return alice.id, bob.id


def test_export_is_complete_and_only_the_users(db: Engine) -> None:
    alice, _bob = _people(db)
    with session_factory(db)() as s:
        data = export_user(s, alice)
        assert export_user(s, 999_999) is None
    assert data["profile"]["subject"] == "alice@uni" and data["profile"]["email"] == "a@uni"
    assert data["groups"] == ["staff"] and data["courses"][0]["name"] == "ml-101"
    assert [k["name"] for k in data["api_keys"]] == ["laptop"]
    assert all("hash" not in k and "secret" not in str(k) for k in data["api_keys"])
    assert len(data["usage_records"]) == 2 and data["content_records"][0]["prompt"] == "secret question"
    assert data["terms_acceptances"][0]["version"] == "2026-1" and len(data["login_sessions"]) == 1
    assert "c" * 64 not in str(data) and "bob" not in str(data)


def test_erase_removes_personal_data_and_keeps_unlinkable_totals(db: Engine) -> None:
    alice, bob = _people(db)
    with session_factory(db)() as s:
        total_before = s.scalar(select(func.sum(UsageRecord.prompt_tokens)))
        removed = erase_user(s, alice)
        s.commit()
        assert removed == {"content_records": 1, "usage_records_unlinked": 2, "api_keys": 1, "login_sessions": 1}
        assert s.get(User, alice) is None and s.get(User, bob) is not None
        for model in (ApiKey, LoginSession, TermsAcceptance, GroupMember, CourseMember, ContentRecord):
            owner = getattr(model, "owner_id", None) or getattr(model, "user_id", None)
            if owner is not None:
                assert s.scalar(select(func.count()).select_from(model).where(owner == alice)) == 0
        assert s.scalar(select(func.count()).select_from(ContentRecord)) == 0
        assert s.scalar(select(func.sum(UsageRecord.prompt_tokens))) == total_before  # totals stay
        pseudonyms = set(s.scalars(select(UsageRecord.user_pseudonym)))
        assert "a" * 64 not in pseudonyms and "b" * 64 in pseudonyms
        erased = [p for p in pseudonyms if p.startswith(ERASED_PREFIX)]
        assert len(erased) == 1  # alice's rows share one fresh, random value
        assert erase_user(s, alice) is None  # a second erase finds nobody


def test_purge_respects_retention_and_is_idempotent(db: Engine, tmp_path) -> None:
    settings = load_settings(home=tmp_path, usage_retention_days=30, content_log_retention_days=7)
    now = utcnow()
    with session_factory(db)() as s:
        user = User(subject="u", pseudonym="u" * 64)
        s.add(user)
        s.flush()
        s.add_all([
            UsageRecord(user_pseudonym="u" * 64, model="m", endpoint="e", at=now - timedelta(days=31)),
            UsageRecord(user_pseudonym="u" * 64, model="m", endpoint="e", at=now - timedelta(days=29)),
            ContentRecord(user_pseudonym="u" * 64, purpose="p", model="m", endpoint="e", prompt="x", response="y",
                          at=now - timedelta(days=8)),
            ContentRecord(user_pseudonym="u" * 64, purpose="p", model="m", endpoint="e", prompt="x", response="y",
                          at=now - timedelta(days=6)),
            LoginSession(token_hash="1" * 64, user_id=user.id, expires_at=now - timedelta(minutes=1)),
            LoginSession(token_hash="2" * 64, user_id=user.id, expires_at=now + timedelta(hours=1)),
            QuotaCounter(subject_kind="user", subject_id=user.id, window="day", window_start=now - timedelta(days=9), used=5),
            QuotaCounter(subject_kind="user", subject_id=user.id, window="week", window_start=now - timedelta(days=6), used=5),
        ])
        s.commit()
    assert purge_expired(db, settings, now) == {"usage_records": 1, "content_records": 1, "login_sessions": 1,
                                                 "quota_counters": 1}
    assert purge_expired(db, settings, now) == {"usage_records": 0, "content_records": 0, "login_sessions": 0,
                                                 "quota_counters": 0}


def test_report_follows_the_configuration(tmp_path) -> None:
    plain = processing_report(load_settings(home=tmp_path, usage_retention_days=90))
    assert "| 90 days |" in plain and "**not stored** (content logging is off)" in plain
    assert "Keine / none: all backends are local." in plain
    logged = processing_report(load_settings(home=tmp_path, content_log_purpose="Evaluation Kurs X",
                                             content_log_retention_days=14, auth="on"))
    assert 'only for the purpose "Evaluation Kurs X" | 14 days' in logged and "Evaluation Kurs X" in logged
    assert "on: every request needs an API key" in logged
    assert all(b.local for b in backends(load_settings(home=tmp_path)))


def test_erase_removes_the_quotas_of_the_user_and_their_keys(db: Engine) -> None:
    """A later user or key that gets a reused id must not inherit limits."""
    from flexi.db.models import Quota

    alice, _bob = _people(db)
    with session_factory(db)() as s:
        key_id = s.scalar(select(ApiKey.id).where(ApiKey.owner_id == alice))
        s.add_all([Quota(subject_kind="user", subject_id=alice, tokens_per_day=7),
                   Quota(subject_kind="key", subject_id=key_id, requests_per_minute=3)])
        s.commit()
        erase_user(s, alice)
        s.commit()
        assert s.scalar(select(func.count()).select_from(Quota)) == 0
