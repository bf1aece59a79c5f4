"""CRUD on the models, constraints, cascades, timestamps, and no text in usage records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, String, delete, func, inspect, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from flexi.db.models import (
    ApiKey,
    Course,
    CourseMember,
    Group,
    GroupMember,
    ModelPolicy,
    Quota,
    TermsAcceptance,
    UsageRecord,
    User,
)


def make_user(session: Session, subject: str, role: str = "student") -> User:
    user = User(subject=subject, pseudonym=f"p-{subject}", role=role)
    session.add(user)
    session.flush()
    return user


def test_user_crud(session: Session) -> None:
    user = make_user(session, "alice@uni", role="teacher")
    user.display_name, user.email = "Alice Müller", "alice@uni.example"
    session.commit()
    loaded = session.scalars(select(User).where(User.subject == "alice@uni")).one()
    assert (loaded.role, loaded.locale, loaded.display_name) == ("teacher", "de", "Alice Müller")
    loaded.role, loaded.locale = "admin", "en"
    session.commit()
    session.expire_all()
    assert (session.get(User, user.id).role, session.get(User, user.id).locale) == ("admin", "en")
    session.delete(loaded)
    session.commit()
    assert session.scalars(select(User)).all() == []


def test_timestamps_are_aware_utc(session: Session) -> None:
    user = make_user(session, "tz")
    user.disabled_at = datetime(2026, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    session.commit()
    session.expire_all()
    loaded = session.get(User, user.id)
    assert loaded.created_at.tzinfo == UTC and abs(datetime.now(UTC) - loaded.created_at) < timedelta(minutes=1)
    assert loaded.disabled_at == datetime(2026, 5, 1, 12, 0, tzinfo=UTC) and loaded.disabled_at.tzinfo == UTC


def test_naive_datetimes_are_refused(session: Session) -> None:
    user = make_user(session, "naive")
    user.disabled_at = datetime(2026, 5, 1, 12, 0)
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_subject_and_pseudonym_are_unique(session: Session) -> None:
    make_user(session, "same")
    session.commit()
    session.add(User(subject="same", pseudonym="other", role="student"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    session.add(User(subject="other", pseudonym="p-same", role="student"))
    with pytest.raises(IntegrityError):
        session.commit()


@pytest.mark.parametrize("field,value", [("role", "god"), ("locale", "fr")])
def test_closed_vocabularies_are_enforced(session: Session, field: str, value: str) -> None:
    user = make_user(session, "x")
    setattr(user, field, value)
    with pytest.raises(IntegrityError):
        session.commit()


def test_groups_courses_and_memberships(session: Session) -> None:
    teacher, student = make_user(session, "t", "teacher"), make_user(session, "s")
    group = Group(name="staff", title="Staff")
    course = Course(name="ml-101", title="Machine Learning")
    session.add_all([group, course])
    session.flush()
    session.add_all([
        GroupMember(group_id=group.id, user_id=teacher.id),
        CourseMember(course_id=course.id, user_id=teacher.id, role="teacher"),
        CourseMember(course_id=course.id, user_id=student.id),
    ])
    session.commit()
    members = session.execute(
        select(User.subject, CourseMember.role).join(CourseMember, CourseMember.user_id == User.id).order_by(User.subject)
    ).all()
    assert [tuple(m) for m in members] == [("s", "student"), ("t", "teacher")]
    course.title = "ML I"
    session.commit()
    assert session.scalars(select(Course.title)).one() == "ML I"

    session.add(CourseMember(course_id=course.id, user_id=student.id, role="teacher"))
    with pytest.raises(IntegrityError):  # one membership per user and course
        session.commit()
    session.rollback()
    session.add(CourseMember(course_id=course.id, user_id=student.id + 100))
    with pytest.raises(IntegrityError):  # foreign keys are enforced (also on SQLite)
        session.commit()
    session.rollback()
    session.add(Group(name="staff"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()

    session.delete(course)
    session.commit()
    assert session.scalars(select(CourseMember)).all() == []
    assert session.scalars(select(GroupMember)).all() != []


def test_deleting_a_user_removes_their_rows_but_keeps_usage(session: Session) -> None:
    user = make_user(session, "gone")
    group = Group(name="g")
    session.add(group)
    session.flush()
    key = ApiKey(prefix="flx_00000000", secret_hash="0" * 64, owner_id=user.id, scopes=["chat"])
    session.add_all([GroupMember(group_id=group.id, user_id=user.id), key, TermsAcceptance(user_id=user.id, version="v1")])
    session.flush()
    session.add(UsageRecord(user_pseudonym=user.pseudonym, key_id=key.id, model="m", endpoint="/v1/chat/completions",
                            prompt_tokens=3, completion_tokens=4))
    session.commit()
    session.execute(delete(User).where(User.id == user.id))  # database-side cascade, as DELETE /me will do
    session.commit()
    session.expire_all()
    assert session.scalars(select(ApiKey)).all() == []
    assert session.scalars(select(GroupMember)).all() == []
    assert session.scalars(select(TermsAcceptance)).all() == []
    record = session.scalars(select(UsageRecord)).one()
    assert (record.key_id, record.prompt_tokens, record.completion_tokens) == (None, 3, 4)


def test_policies_quotas_terms(session: Session) -> None:
    user = make_user(session, "q")
    session.add_all([
        ModelPolicy(pattern="llama3*", allowed_roles=["teacher", "researcher"], allowed_groups=None, max_context=8192, max_output=1024),
        Quota(subject_kind="user", subject_id=user.id, requests_per_minute=20, tokens_per_day=100_000),
        TermsAcceptance(user_id=user.id, version="2026-01"),
    ])
    session.commit()
    session.expire_all()
    policy = session.scalars(select(ModelPolicy)).one()
    assert policy.allowed_roles == ["teacher", "researcher"] and policy.allowed_groups is None
    quota = session.scalars(select(Quota)).one()
    assert (quota.requests_per_minute, quota.tokens_per_day, quota.tokens_per_week) == (20, 100_000, None)
    assert session.scalars(select(TermsAcceptance)).one().accepted_at.tzinfo == UTC

    session.add(Quota(subject_kind="user", subject_id=user.id))
    with pytest.raises(IntegrityError):  # one quota row per subject
        session.commit()
    session.rollback()
    session.add(Quota(subject_kind="planet", subject_id=1))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    session.add(TermsAcceptance(user_id=user.id, version="2026-01"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_usage_records_have_no_text_columns(db: Engine) -> None:
    """Data protection: a usage record cannot hold a prompt or a response."""
    columns = inspect(db).get_columns("usage_records")
    names = {c["name"] for c in columns}
    assert names == {
        "id", "at", "user_pseudonym", "key_id", "course_id", "model", "endpoint",
        "prompt_tokens", "completion_tokens", "queue_ms", "generation_ms", "status", "assistant_id",
        "request_id", "replica",  # the usage journal's join of start and end, and who ran the request
        "end_user",  # a keyed hash (64 hex) of a service key's end user, never the raw id
        "template_id", "template_version",  # runs of a prompt template (numbers only, issue 15)
    }
    for column in columns:
        kind = column["type"]
        assert type(kind).__name__.upper() not in {"TEXT", "CLOB", "JSON", "JSONB", "BLOB", "BYTEA"}, column["name"]
        if isinstance(kind, String):  # short identifiers only: a model name, an endpoint, a status
            assert kind.length is not None and kind.length <= 255, column["name"]


def test_deleting_an_assistant_deletes_its_documents_and_chunks(session: Session) -> None:
    """Issue 13: an assistant's course material goes with it (ON DELETE CASCADE, on both databases)."""
    from flexi.db.models import Assistant, AssistantDocument, Course, DocumentChunk

    course = Course(name="rag-course")
    session.add(course)
    session.flush()
    assistant = Assistant(slug="s" * 20, course_id=course.id, name="A", model="m")
    session.add(assistant)
    session.flush()
    doc = AssistantDocument(assistant_id=assistant.id, name="skript.pdf", sha256="0" * 64, status="ready", pages=2)
    session.add(doc)
    session.flush()
    session.add_all([DocumentChunk(document_id=doc.id, ordinal=i, page=1 + i, text=f"chunk {i}",
                                   embedding=b"\0" * 16, embedding_model="all-minilm:l6-v2") for i in range(2)])
    session.commit()
    assert session.scalar(select(func.count()).select_from(DocumentChunk)) == 2
    session.execute(delete(Assistant).where(Assistant.id == assistant.id))  # a database-level delete: the FK cascades
    session.commit()
    assert session.scalar(select(func.count()).select_from(AssistantDocument)) == 0
    assert session.scalar(select(func.count()).select_from(DocumentChunk)) == 0
