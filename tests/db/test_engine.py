"""Engine construction: SQLite defaults in FLEXI_HOME, PostgreSQL driver choice."""

from __future__ import annotations

from pathlib import Path

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
