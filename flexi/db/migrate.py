"""Run the Alembic migrations shipped inside the package, from code.

The server migrates its database on start, so the migrations travel in the
wheel (`flexi/db/migrations`) and the Alembic configuration is built here;
no `alembic.ini` is needed at run time. Developers can still use the Alembic
CLI for new revisions with `-c` pointing at a small ini that names the same
`script_location`, or by calling `alembic_config()` from Python.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from flexi.db.engine import make_engine


def script_location() -> str:
    """The migrations folder inside the installed package."""
    return str(files("flexi.db") / "migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code; `connection` is what env.py migrates."""
    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None = never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Upgrade the database to `revision` (default: the newest). Safe to call on
    every start: an up-to-date database is left alone."""
    _run(engine_or_url, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine_or_url: Engine | str, revision: str) -> None:
    """Downgrade to `revision` ("base" = empty). For tests and emergencies."""
    _run(engine_or_url, lambda cfg: command.downgrade(cfg, revision))


def _run(engine_or_url: Engine | str, action) -> None:  # type: ignore[no-untyped-def]
    own = isinstance(engine_or_url, str)
    engine = make_engine(engine_or_url, Path(".")) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect() as connection:
            action(alembic_config(connection))
    finally:
        if own:
            engine.dispose()
