"""Engine and sessions for the state database.

SQLite file `$FLEXI_HOME/flexi.db` by default, so a laptop needs no database
server; PostgreSQL (`FLEXI_DATABASE_URL=postgresql://…`) when several server
replicas share state. Nothing here is global: the server builds one engine in
its lifespan and passes it (or a session factory) to whoever needs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

SQLITE_FILE = "flexi.db"


def resolve_url(url: str | None, home: Path) -> URL:
    """The configured URL, or the SQLite file in `home` when none is set.

    Plain `postgresql://` / `postgres://` URLs get the psycopg 3 driver, the one
    Flexi depends on (SQLAlchemy would otherwise look for psycopg2)."""
    if not url:
        return URL.create("sqlite", database=str(home / SQLITE_FILE))
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL | None, home: Path, **kwargs: Any) -> Engine:
    """Create the engine for `url` (None = SQLite in `home`). Extra keyword
    arguments go to `sqlalchemy.create_engine` (e.g. `echo=True`)."""
    resolved = url if isinstance(url, URL) else resolve_url(url, home)
    if resolved.get_backend_name() == "sqlite":
        return _sqlite_engine(resolved, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)  # survive a database restart or failover
    return create_engine(resolved, **kwargs)


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    database = url.database or ":memory:"
    connect_args = kwargs.pop("connect_args", {})
    # The server hands connections to worker threads; sqlite3's own check would refuse.
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", 15)  # wait for a writer instead of failing with "database is locked"
    if database == ":memory:":
        kwargs.setdefault("poolclass", StaticPool)  # one shared connection, else every connection is a new empty DB
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


IMMEDIATE = "flexi_immediate"


def _sqlite_begin(conn: Any) -> None:
    """Begin transactions ourselves (pysqlite's own BEGIN is switched off in
    `_sqlite_pragmas`): `BEGIN IMMEDIATE` for write transactions, so a writer
    takes the lock before it reads. A deferred transaction that reads, lets
    another writer commit, and then writes fails at once with "database is
    locked" in WAL mode, whatever the busy timeout."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(IMMEDIATE) else "BEGIN")


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: takes SQLite's write lock up front (no-op
    difference on PostgreSQL, where row locks and conditional UPDATEs suffice)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{IMMEDIATE: True})
        with conn.begin():
            yield conn


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: enforce foreign keys (SQLite's default is off, which would
    silently keep orphans after a cascade) and use WAL, so readers never block
    the writer and a request's usage write does not stall others' reads."""
    dbapi_connection.isolation_level = None  # transactions begin in _sqlite_begin
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, far fewer fsyncs
    finally:
        cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit, so objects returned
    by a function that committed can still be read by its caller.

    Sessions are for changes (admin operations), so on SQLite they begin
    IMMEDIATE: a session that reads and then writes cannot fail half-way with
    "database is locked" because another writer committed in between. Hot
    read paths use plain connections instead."""
    return sessionmaker(engine.execution_options(**{IMMEDIATE: True}), expire_on_commit=False)
