"""Database fixtures: every test that takes `db_url` runs on SQLite and on a real PostgreSQL.

The PostgreSQL server is a throwaway one per test session (initdb + pg_ctl
into a temporary directory, TCP on a free loopback port, no fsync), with a
fresh database per test. PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` system user (or `flexitest`, created if needed).
Without PostgreSQL installed the postgresql variants are skipped, or fail
when FLEXI_REQUIRE_POSTGRES=1 (as in CI), so CI cannot pass without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from flexi.db.engine import make_engine, session_factory
from flexi.db.migrate import upgrade
from tests.pg import PG_USER, PostgresServer  # noqa: F401  (the fixture postgres_server lives in tests/conftest.py)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flexi.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on the empty database (not migrated)."""
    eng = make_engine(db_url, tmp_path)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Engine:
    """An engine on a database migrated to the newest revision."""
    upgrade(engine)
    return engine


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with session_factory(db)() as s:
        yield s
