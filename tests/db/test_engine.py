"""Engine construction: SQLite defaults in FLEXI_HOME, PostgreSQL driver choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from flexi.config import Settings
from flexi.db.engine import make_engine, resolve_url, session_factory
from flexi.db.migrate import upgrade


def test_default_is_a_sqlite_file_in_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    engine = make_engine(None, home)
    try:
        upgrade(engine)
        assert (home / "flexi.db").is_file()
        with engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_setting_defaults_to_none(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("FLEXI_DATABASE_URL", raising=False)
    monkeypatch.setenv("FLEXI_CONFIG", str(tmp_path / "none.toml"))
    assert Settings(home=tmp_path).database_url is None
    monkeypatch.setenv("FLEXI_DATABASE_URL", "postgresql://u@db/flexi")
    assert Settings(home=tmp_path).database_url == "postgresql://u@db/flexi"


def test_postgres_urls_get_the_psycopg_driver(tmp_path: Path) -> None:
    for url in ("postgresql://u:p@db:5432/flexi", "postgres://u:p@db:5432/flexi", "postgresql+psycopg://u:p@db:5432/flexi"):
        resolved = resolve_url(url, tmp_path)
        assert resolved.drivername == "postgresql+psycopg" and resolved.database == "flexi"


def test_in_memory_sqlite_shares_one_database(tmp_path: Path) -> None:
    engine = make_engine("sqlite://", tmp_path)
    upgrade(engine)
    with session_factory(engine)() as s:
        assert s.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    engine.dispose()


def test_sessions_work_across_threads(db: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    factory = session_factory(db)

    def count(_: int) -> int:
        with factory() as s:
            return s.execute(text("SELECT count(*) FROM users")).scalar_one()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(count, range(8))) == [0] * 8


def test_postgres_connections_killed_by_the_server_are_replaced(postgres_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """pg_terminate_backend on every pooled connection (a failover, an admin, an idle timeout): the next
    checkout notices (pool_pre_ping) and reconnects, so no request fails; without the ping it would."""
    from sqlalchemy.exc import OperationalError

    name = postgres_server.create_database()
    engines = {ping: make_engine(postgres_server.url(name), tmp_path, pool_size=3, pool_pre_ping=ping)
               for ping in (True, False)}
    try:
        for engine in engines.values():
            with engine.connect() as c:
                assert c.execute(text("SELECT 1")).scalar_one() == 1
        with postgres_server.admin() as admin:
            killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = %s", (name,)).fetchone()
        assert killed is not None and killed[0] == 2
        for _ in range(3):
            with engines[True].connect() as c:  # Flexi's engines: make_engine's default
                assert c.execute(text("SELECT 1")).scalar_one() == 1
        with pytest.raises(OperationalError):
            with engines[False].connect() as c:
                c.execute(text("SELECT 1"))
    finally:
        for engine in engines.values():
            engine.dispose()
        postgres_server.drop_database(name)
