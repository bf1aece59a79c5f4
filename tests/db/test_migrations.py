"""Migrations: an empty database reaches head; an existing one upgrades without losing rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from flexi.db.migrate import current_revision, downgrade, head_revision, script_location, upgrade
from flexi.db.models import Base


def test_empty_database_upgrades_to_head(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0003"
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_models_and_migrations_agree(db: Engine) -> None:
    """The schema the migrations build is the one the models describe (types,
    nullability, indexes, unique constraints, foreign keys)."""
    with db.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
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
