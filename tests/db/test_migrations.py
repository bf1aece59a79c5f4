"""Migrations: an empty database reaches head; an existing one upgrades without losing rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from flexi.db.migrate import current_revision, downgrade, head_revision, script_location, upgrade
from flexi.db.models import Base, include_object


def test_empty_database_upgrades_to_head(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0015"
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_models_and_migrations_agree(db: Engine) -> None:
    """The schema the migrations build is the one the models describe (types,
    nullability, indexes, unique constraints, foreign keys); the search index's PostgreSQL-only columns
    (flexi.rag.pgindex) are not models and are left out, as in env.py."""
    with db.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include_object})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_is_idempotent(db: Engine) -> None:
    upgrade(db)
    assert current_revision(db) == head_revision()


def test_upgrade_by_url(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)


def test_check_constraints_survive_the_table_rebuild(db: Engine) -> None:
    """0002 rebuilds `users` on SQLite; the role CHECK from 0001 must come along."""
    with pytest.raises(IntegrityError), db.begin() as c:
        c.execute(text("INSERT INTO users (subject, pseudonym, role) VALUES ('x', 'px', 'god')"))
    with pytest.raises(IntegrityError), db.begin() as c:
        c.execute(text("INSERT INTO users (subject, pseudonym, role, locale) VALUES ('y', 'py', 'student', 'fr')"))


def test_upgrade_keeps_existing_rows(engine: Engine) -> None:
    """A database made by revision 0001, filled with plain SQL (as an older Flexi
    would have), upgrades to head with every row intact and the new column set."""
    upgrade(engine, "0001")
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO users (id, subject, pseudonym, role, created_at) VALUES (:id, :s, :p, :r, :t)"),
            [
                {"id": 1, "s": "alice@uni", "p": "a" * 64, "r": "teacher", "t": at},
                {"id": 2, "s": "bob@uni", "p": "b" * 64, "r": "student", "t": at},
            ],
        )
        c.execute(text("INSERT INTO courses (id, name, title) VALUES (1, 'ml-101', 'Machine Learning')"))
        c.execute(text("INSERT INTO course_members (course_id, user_id, role) VALUES (1, 1, 'teacher'), (1, 2, 'student')"))
        c.execute(text("INSERT INTO groups (id, name) VALUES (1, 'staff')"))
        c.execute(text("INSERT INTO group_members (group_id, user_id) VALUES (1, 1)"))
        c.execute(
            text("INSERT INTO api_keys (id, prefix, secret_hash, owner_id, name, created_at) VALUES (1, 'flx_aaaaaaaa', :h, 2, 'laptop', :t)"),
            {"h": "0" * 64, "t": at},
        )
        c.execute(
            text(
                "INSERT INTO usage_records (at, user_pseudonym, key_id, course_id, model, endpoint, prompt_tokens,"
                " completion_tokens, queue_ms, generation_ms, status) VALUES (:t, :p, 1, 1, 'smollm2:135m', '/api/chat', 10, 20, 1, 2, 'ok')"
            ),
            {"t": at, "p": "b" * 64},
        )
        c.execute(text("INSERT INTO terms_acceptances (user_id, version, accepted_at) VALUES (2, '2026-01', :t)"), {"t": at})
    counts_before = _counts(engine)

    upgrade(engine)

    assert current_revision(engine) == head_revision()
    assert _counts(engine) == counts_before
    with engine.connect() as c:
        users = c.execute(text("SELECT id, subject, role, locale FROM users ORDER BY id")).all()
        assert [tuple(u) for u in users] == [(1, "alice@uni", "teacher", "de"), (2, "bob@uni", "student", "de")]
        assert c.execute(text("SELECT owner_id FROM api_keys WHERE prefix = 'flx_aaaaaaaa'")).scalar_one() == 2
        if engine.dialect.name == "sqlite":
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with engine.begin() as c:  # foreign keys are enforced again after the migration
        c.execute(text("DELETE FROM users WHERE id = 2"))
    assert _counts(engine)["api_keys"] == 0 and _counts(engine)["usage_records"] == 1


def test_upgrade_from_0003_keeps_rows_and_adds_assistants(engine: Engine) -> None:
    """A 0003 database with people, keys, sessions and usage upgrades to 0004 (assistants,
    conversations, usage_records.assistant_id) with every row intact; the new column is NULL
    for old rows and its foreign key works (SET NULL when the assistant goes)."""
    upgrade(engine, "0003")
    at = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(text("INSERT INTO users (id, subject, pseudonym, role, locale, password_hash, created_at)"
                       " VALUES (1, 'tea@uni', :p1, 'teacher', 'en', 'scrypt$x', :t), (2, 'stu@uni', :p2, 'student', 'de', NULL, :t)"),
                  {"p1": "t" * 64, "p2": "s" * 64, "t": at})
        c.execute(text("INSERT INTO courses (id, name, title) VALUES (1, 'bio-1', 'Biologie')"))
        c.execute(text("INSERT INTO course_members (course_id, user_id, role) VALUES (1, 1, 'teacher'), (1, 2, 'student')"))
        c.execute(text("INSERT INTO api_keys (id, prefix, secret_hash, owner_id, name, created_at, scopes, course_id)"
                       " VALUES (1, 'flx_bbbbbbbb', :h, 2, 'k', :t, '[]', 1)"), {"h": "0" * 64, "t": at})
        c.execute(text("INSERT INTO login_sessions (token_hash, user_id, created_at, expires_at, method)"
                       " VALUES (:h, 1, :t, :t, 'password')"), {"h": "9" * 64, "t": at})
        c.execute(text("INSERT INTO usage_records (at, user_pseudonym, key_id, course_id, model, endpoint, prompt_tokens,"
                       " completion_tokens, queue_ms, generation_ms, status) VALUES (:t, :p, 1, 1, 'm', '/api/chat', 3, 4, 0, 0, 'ok')"),
                  {"t": at, "p": "s" * 64})
        c.execute(text("INSERT INTO role_quotas (role, tokens_per_day) VALUES ('student', 1000)"))
    tables = ["users", "courses", "course_members", "api_keys", "login_sessions", "usage_records", "role_quotas"]

    def counts() -> dict[str, int]:
        with engine.connect() as c:
            return {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}

    before = counts()
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0015"
    assert counts() == before
    with engine.connect() as c:
        row = c.execute(text("SELECT key_id, course_id, prompt_tokens, assistant_id FROM usage_records")).one()
        assert tuple(row) == (1, 1, 3, None)
        assert c.execute(text("SELECT password_hash FROM users WHERE id = 1")).scalar_one() == "scrypt$x"
        if engine.dialect.name == "sqlite":
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with engine.begin() as c:
        c.execute(text("INSERT INTO assistants (id, slug, course_id, owner_id, name, model)"
                       " VALUES (1, 'abcdefghijklmnop', 1, 1, 'Tutor', 'm')"))
        c.execute(text("UPDATE usage_records SET assistant_id = 1"))
        c.execute(text("INSERT INTO conversations (id, user_id, title, model, assistant_id) VALUES (1, 2, 't', 'm', 1)"))
        c.execute(text("INSERT INTO chat_messages (conversation_id, role, content, position) VALUES (1, 'user', 'hi', 0)"))
        defaults = c.execute(text("SELECT audience, show_system_prompt, disabled, example_questions, options"
                                  " FROM assistants")).one()
        assert (defaults[0], bool(defaults[1]), bool(defaults[2])) == ("course", False, False)
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text("INSERT INTO assistants (slug, course_id, name, model, audience) VALUES ('x', 1, 'n', 'm', 'world')"))
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text("INSERT INTO chat_messages (conversation_id, role, content, position) VALUES (1, 'tool', 'x', 1)"))
    with engine.begin() as c:  # the assistant goes: usage stays unlinked, conversations stay; the user goes: chats go
        c.execute(text("DELETE FROM assistants WHERE id = 1"))
        assert c.execute(text("SELECT assistant_id FROM usage_records")).scalar_one() is None
        assert c.execute(text("SELECT assistant_id FROM conversations")).scalar_one() is None
        c.execute(text("DELETE FROM users WHERE id = 2"))
        assert c.execute(text("SELECT count(*) FROM chat_messages")).scalar_one() == 0
        assert c.execute(text("SELECT count(*) FROM conversations")).scalar_one() == 0
    downgrade(engine, "0003")
    assert "assistant_id" not in {col["name"] for col in inspect(engine).get_columns("usage_records")}
    assert counts()["usage_records"] == 1


def test_downgrade_to_base_and_back(db: Engine) -> None:
    downgrade(db, "0001")
    assert "locale" not in {col["name"] for col in inspect(db).get_columns("users")}
    downgrade(db, "base")
    assert set(inspect(db).get_table_names()) <= {"alembic_version"}
    upgrade(db)
    assert current_revision(db) == head_revision()


def test_migrations_ship_inside_the_package() -> None:
    from pathlib import Path

    versions = Path(script_location()) / "versions"
    assert (Path(script_location()) / "env.py").is_file()
    assert {p.name[:4] for p in versions.glob("*.py")} >= {"0001", "0002"}


def _counts(engine: Engine) -> dict[str, int]:
    tables = ["users", "courses", "course_members", "groups", "group_members", "api_keys", "usage_records", "terms_acceptances"]
    with engine.connect() as c:
        return {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def test_upgrade_to_0012_keeps_counters_and_allows_end_users(engine: Engine) -> None:
    """0012 widens the quota subject kinds to `enduser` and adds `end_user` to the counters' primary key:
    existing counters keep their use (end_user ''), and one key's end users each get their own row."""
    upgrade(engine, "0010")
    at = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(text("INSERT INTO quota_counters (subject_kind, subject_id, \"window\", window_start, used)"
                       " VALUES ('key', 1, 'day', :t, 42)"), {"t": at})
        c.execute(text("INSERT INTO quotas (subject_kind, subject_id, tokens_per_day) VALUES ('key', 1, 100)"))
    upgrade(engine)
    with engine.begin() as c:
        assert tuple(c.execute(text("SELECT subject_kind, used, end_user FROM quota_counters")).one()) == ("key", 42, "")
        c.execute(text("INSERT INTO quotas (subject_kind, subject_id, tokens_per_day) VALUES ('enduser', 1, 10)"))
        c.execute(text("INSERT INTO quota_counters (subject_kind, subject_id, \"window\", window_start, used, end_user)"
                       " VALUES ('enduser', 1, 'day', :t, 1, 'a'), ('enduser', 1, 'day', :t, 2, 'b')"), {"t": at})
    with pytest.raises(IntegrityError), engine.begin() as c:  # still one row per subject, window and end user
        c.execute(text("INSERT INTO quota_counters (subject_kind, subject_id, \"window\", window_start, used, end_user)"
                       " VALUES ('enduser', 1, 'day', :t, 3, 'a')"), {"t": at})
    with pytest.raises(IntegrityError), engine.begin() as c:  # the CHECK came along through the rebuild
        c.execute(text("INSERT INTO quotas (subject_kind, subject_id) VALUES ('planet', 1)"))
    downgrade(engine, "0010")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM quota_counters")).scalar_one() == 1
        assert c.execute(text("SELECT count(*) FROM quotas")).scalar_one() == 1
