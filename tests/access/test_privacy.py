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
    Assistant,
    ChatMessage,
    ContentRecord,
    Conversation,
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
        alice_key = create_key(s, alice.id, "laptop")
        create_key(s, bob.id, "bob's")
        s.add(TermsAcceptance(user_id=alice.id, version="2026-1"))
        s.add(LoginSession(token_hash="c" * 64, user_id=alice.id, expires_at=utcnow() + timedelta(hours=1)))
        for pseudonym, tokens in (("a" * 64, 10), ("a" * 64, 20), ("b" * 64, 5)):
            key = alice_key.info.id if pseudonym == "a" * 64 else None  # a key id would link rows to a reused id
            s.add(UsageRecord(user_pseudonym=pseudonym, key_id=key, model="m", endpoint="/api/chat",
                              prompt_tokens=tokens, completion_tokens=1))
        s.add(ContentRecord(user_pseudonym="a" * 64, purpose="study", model="m", endpoint="/api/chat",
                            prompt="secret question", response="answer"))
        helper = Assistant(slug="alice-helper-0001", course_id=course.id, owner_id=alice.id, name="Statistik-Hilfe",
                           model="m", system_prompt="Antworte knapp.", options={"temperature": 0.2})
        s.add(helper)
        s.flush()
        for uid, title in ((alice.id, "Varianz"), (alice.id, "Regression"), (bob.id, "bobs chat")):
            conv = Conversation(user_id=uid, title=title, model="m", assistant_id=helper.id if title == "Varianz" else None)
            s.add(conv)
            s.flush()
            s.add_all([ChatMessage(conversation_id=conv.id, role="user", content=f"{title}?", position=0),
                       ChatMessage(conversation_id=conv.id, role="assistant", content="ok", position=1)])
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
    assert [c["title"] for c in data["conversations"]] == ["Varianz", "Regression"]
    assert [(m["role"], m["content"]) for m in data["conversations"][0]["messages"]] == [("user", "Varianz?"), ("assistant", "ok")]
    assert data["conversations"][0]["assistant_id"] is not None
    (owned,) = data["assistants_owned"]
    assert owned["name"] == "Statistik-Hilfe" and owned["system_prompt"] == "Antworte knapp."
    assert owned["options"] == {"temperature": 0.2}


def test_erase_removes_personal_data_and_keeps_unlinkable_totals(db: Engine) -> None:
    alice, bob = _people(db)
    with session_factory(db)() as s:
        total_before = s.scalar(select(func.sum(UsageRecord.prompt_tokens)))
        removed = erase_user(s, alice)
        s.commit()
        assert removed == {"content_records": 1, "usage_records_unlinked": 2, "api_keys": 1, "login_sessions": 1,
                           "conversations": 2, "assistants_unowned": 1}
        assert s.scalars(select(Conversation.title)).all() == ["bobs chat"]  # bob's stay
        assert s.scalar(select(func.count()).select_from(ChatMessage)) == 2
        (kept,) = s.scalars(select(Assistant)).all()  # the course keeps its assistant, without an owner
        assert kept.owner_id is None and kept.name == "Statistik-Hilfe"
        assert s.get(User, alice) is None and s.get(User, bob) is not None
        for model in (ApiKey, LoginSession, TermsAcceptance, GroupMember, CourseMember, ContentRecord):
            owner = getattr(model, "owner_id", None) or getattr(model, "user_id", None)
            if owner is not None:
                assert s.scalar(select(func.count()).select_from(model).where(owner == alice)) == 0
        assert s.scalar(select(func.count()).select_from(ContentRecord)) == 0
        assert s.scalar(select(func.sum(UsageRecord.prompt_tokens))) == total_before  # totals stay
        pseudonyms = set(s.scalars(select(UsageRecord.user_pseudonym)))
        assert "a" * 64 not in pseudonyms and "b" * 64 in pseudonyms
        assert s.scalar(select(func.count()).select_from(UsageRecord).where(UsageRecord.key_id.is_not(None))) == 0
        erased = [p for p in pseudonyms if p.startswith(ERASED_PREFIX)]
        assert len(erased) == 1  # alice's rows share one fresh, random value
        assert erase_user(s, alice) is None  # a second erase finds nobody


def test_purge_respects_retention_and_is_idempotent(db: Engine, tmp_path) -> None:
    settings = load_settings(home=tmp_path, usage_retention_days=30, content_log_retention_days=7, chat_retention_days=14)
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
        old = Conversation(user_id=user.id, title="old", model="m", created_at=now - timedelta(days=40),
                           updated_at=now - timedelta(days=15))
        recent = Conversation(user_id=user.id, title="recent", model="m", created_at=now - timedelta(days=40),
                              updated_at=now - timedelta(days=13))  # old, but continued since: kept
        s.add_all([old, recent])
        s.flush()
        s.add_all([ChatMessage(conversation_id=c.id, role="user", content="x", position=0) for c in (old, recent)])
        s.commit()
    assert purge_expired(db, settings, now) == {"usage_records": 1, "content_records": 1, "login_sessions": 1,
                                                 "quota_counters": 1, "conversations": 1}
    assert purge_expired(db, settings, now) == {"usage_records": 0, "content_records": 0, "login_sessions": 0,
                                                 "quota_counters": 0, "conversations": 0}
    with session_factory(db)() as s:
        assert s.scalars(select(Conversation.title)).all() == ["recent"]
        assert s.scalar(select(func.count()).select_from(ChatMessage)) == 1


def test_report_follows_the_configuration(tmp_path) -> None:
    plain = processing_report(load_settings(home=tmp_path, usage_retention_days=90))
    assert "| 90 days |" in plain and "**not stored** (content logging is off)" in plain
    assert "Keine / none: all backends are local." in plain
    logged = processing_report(load_settings(home=tmp_path, content_log_purpose="Evaluation Kurs X",
                                             content_log_retention_days=14, auth="on"))
    assert 'only for the purpose "Evaluation Kurs X" | 14 days' in logged and "Evaluation Kurs X" in logged
    assert "on: every request needs an API key" in logged
    assert "for content logging: *[fill in" in logged and "for content logging" not in plain
    assert "terms of use: none configured" in plain
    assert "version `2026-3`, /terms" in processing_report(load_settings(home=tmp_path, terms_version="2026-3"))
    assert all(b.local for b in backends(load_settings(home=tmp_path)))
    assert "**not stored on the server** (kept in the user's browser" in plain
    kept = processing_report(load_settings(home=tmp_path, chat_history="server", chat_retention_days=9))
    assert "(`FLEXI_CHAT_HISTORY=server`) | 9 days after the last change" in kept


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


def _usage_fixture(db: Engine) -> dict[str, int]:
    """Two users, two courses, two keys, two models, three UTC days (rows either side of midnight)."""
    from datetime import UTC, datetime

    with session_factory(db)() as s:
        ann = User(subject="ann", pseudonym="p" * 64)
        ben = User(subject="ben", pseudonym="q" * 64)
        s.add_all([ann, ben, Course(name="nlp"), Course(name="stats")])
        s.flush()
        nlp, stats = (s.scalar(select(Course.id).where(Course.name == n)) for n in ("nlp", "stats"))
        k1, k2 = create_key(s, ann.id, "k1").info.id, create_key(s, ben.id, "k2").info.id
        day = datetime(2026, 3, 1, tzinfo=UTC)
        rows = [  # (pseudonym, key, course, model, at, prompt, completion, status, queue, gen)
            ("p", k1, nlp, "big", day + timedelta(hours=23, minutes=59), 10, 5, "ok", 10, 100),
            ("p", k1, nlp, "big", day + timedelta(days=1, minutes=1), 20, 5, "ok", 30, 300),
            ("p", k1, None, "small", day + timedelta(days=1, hours=12), 1, 0, "rejected", 0, 0),
            ("q", k2, stats, "small", day + timedelta(days=2), 4, 4, "error", 2, 20),
            ("q", k2, stats, "small", day + timedelta(days=2, hours=1), 6, 6, "cancelled", 4, 40),
        ]
        for p, key, course, model, at, pt, ct, status, q, g in rows:
            s.add(UsageRecord(user_pseudonym=p * 64, key_id=key, course_id=course, model=model, endpoint="/api/chat",
                              at=at, prompt_tokens=pt, completion_tokens=ct, status=status, queue_ms=q,
                              generation_ms=g))
        s.commit()
        return {"ann": ann.id, "ben": ben.id, "k1": k1, "k2": k2, "nlp": nlp}


def test_usage_summary_groups_filters_and_utc_days(db: Engine) -> None:
    from datetime import UTC, datetime

    from flexi.access.usage_queries import usage_summary

    _usage_fixture(db)
    with session_factory(db)() as s:
        by_day = usage_summary(s, "day")
        assert [(r["day"], r["requests"]) for r in by_day] == [("2026-03-03", 2), ("2026-03-02", 2), ("2026-03-01", 1)]
        users = {r["user"]: r for r in usage_summary(s, "user")}
        assert set(users) == {"p" * 64, "q" * 64}  # pseudonyms only, never subjects
        ann = users["p" * 64]
        assert (ann["requests"], ann["prompt_tokens"], ann["completion_tokens"], ann["ok"], ann["rejected"]) == (3, 31, 10, 2, 1)
        assert users["q" * 64]["errors"] == 1 and users["q" * 64]["cancelled"] == 1
        assert users["q" * 64]["mean_queue_ms"] == 3 and users["q" * 64]["mean_generation_ms"] == 30
        courses = {r["course"]: r["requests"] for r in usage_summary(s, "course")}
        assert courses == {"nlp": 2, "stats": 2, None: 1}
        models = {r["model"]: r["prompt_tokens"] for r in usage_summary(s, "model")}
        assert models == {"big": 30, "small": 11}
        keys = {r["key"]: r["requests"] for r in usage_summary(s, "key")}
        assert sorted(keys.values()) == [2, 3] and all(k.startswith("flx_") for k in keys)
        march2 = datetime(2026, 3, 2, tzinfo=UTC)
        window = usage_summary(s, "model", since=march2, until=march2 + timedelta(days=1))
        assert {r["model"]: r["requests"] for r in window} == {"big": 1, "small": 1}
        assert usage_summary(s, "day", model="small", course="stats") == [
            {"day": "2026-03-03", "requests": 2, "prompt_tokens": 10, "completion_tokens": 10, "ok": 0, "rejected": 0,
             "cancelled": 1, "errors": 1, "mean_queue_ms": 3, "mean_generation_ms": 30}]
        assert usage_summary(s, "user", model="' OR 1=1--", course="x'; DROP TABLE usage_records;--") == []
        assert usage_summary(s, "day", limit=1)[0]["day"] == "2026-03-03"
        assert s.scalar(select(func.count()).select_from(UsageRecord)) == 5
        try:
            usage_summary(s, "planet")
        except ValueError as exc:
            assert "group by one of" in str(exc)
        else:
            raise AssertionError("an unknown grouping must be refused")


def test_own_usage_shows_every_limit_that_applies(db: Engine) -> None:
    from datetime import UTC, datetime

    from flexi.access.principal import Principal
    from flexi.access.quota import QuotaLedger
    from flexi.access.usage_queries import own_usage
    from flexi.db.models import Quota, RoleQuota

    ids = _usage_fixture(db)
    now = utcnow()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with session_factory(db)() as s:
        s.add_all([RoleQuota(role="student", tokens_per_day=1000),  # ann has no own quota: her role's applies
                   Quota(subject_kind="key", subject_id=ids["k1"], requests_per_minute=5),
                   Quota(subject_kind="course", subject_id=ids["nlp"], tokens_per_week=9000),
                   CourseMember(course_id=ids["nlp"], user_id=ids["ann"]),
                   QuotaCounter(subject_kind="user", subject_id=ids["ann"], window="day", window_start=today, used=250),
                   UsageRecord(user_pseudonym="p" * 64, key_id=ids["k1"], model="big", endpoint="/api/chat",
                               prompt_tokens=7, completion_tokens=3, at=now - timedelta(hours=1))])
        s.commit()
    ann = Principal(user_id=ids["ann"], subject="ann", pseudonym="p" * 64, role="student", locale="en",
                    courses=frozenset({ids["nlp"]}), key_id=ids["k1"], key_course_id=ids["nlp"])
    ledger = QuotaLedger(db)
    try:
        with session_factory(db)() as s:
            mine = own_usage(s, ann, ledger, days=30)
            ledger.forget()
            left = own_usage(s, Principal(**{**ann.__dict__, "courses": frozenset()}), ledger, days=30)
    finally:
        if ledger.executor is not None:
            ledger.executor.shutdown()
    assert [(r["model"], r["requests"], r["prompt_tokens"]) for r in mine["per_model"]] == [("big", 1, 7)]
    assert sum(r["requests"] for r in mine["per_day"]) == 1  # only the last 30 days, only her rows
    quotas = {(q["applies_to"], q["limit"]): q for q in mine["quotas"]}
    assert set(quotas) == {("user", "tokens_per_day"), ("key", "requests_per_minute"), ("course", "tokens_per_week")}
    day = quotas[("user", "tokens_per_day")]
    assert (day["value"], day["used"], day["remaining"]) == (1000, 250, 750)
    assert datetime.fromisoformat(day["resets_at"]) == today + timedelta(days=1)
    week = datetime.fromisoformat(quotas[("course", "tokens_per_week")]["resets_at"])
    assert week.weekday() == 0 and week.astimezone(UTC).hour == 0 and timedelta(0) < week - now <= timedelta(days=7)
    assert {q["applies_to"] for q in left["quotas"]} == {"user", "key"}  # left the course: its key no longer bills it


def test_export_tells_purposes_retention_and_recipients(db: Engine, tmp_path) -> None:
    alice, _bob = _people(db)
    settings = load_settings(home=tmp_path, usage_retention_days=45, content_log_purpose="Lehrevaluation",
                             terms_version="2026-1")
    with session_factory(db)() as s:
        data = export_user(s, alice, settings)
        plain = export_user(s, alice)
    assert "processing" not in plain
    info = data["processing"]
    assert info["retention_days"]["usage_records"] == 45 and info["content_logging"] == "Lehrevaluation"
    assert all(loc["local"] for loc in info["processing_locations"]) and info["terms_version"] == "2026-1"
