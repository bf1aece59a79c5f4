"""Alembic environment: migrates the connection handed over by `flexi.db.migrate`
(or, from the Alembic CLI, a connection to `sqlalchemy.url`).

SQLite detail: changes that SQLite's ALTER TABLE cannot do run in Alembic's
batch mode, which copies the table, DROPs the old one and renames the copy.
With foreign keys ON, that DROP would cascade-delete or block every row that
points at the table (keys, memberships...). So foreign keys are switched off
for the migration, checked with `PRAGMA foreign_key_check` afterwards and
switched on again, as SQLite's documentation prescribes for schema changes.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from flexi.db.models import Base, include_object

config = context.config
target_metadata = Base.metadata


def _pragma(connection: Connection, statement: str) -> None:
    """Run a PRAGMA outside any transaction: on the raw sqlite3 connection, since
    SQLAlchemy would begin a transaction first (Flexi begins SQLite transactions
    itself, see flexi.db.engine) and SQLite ignores foreign_keys inside one."""
    connection.connection.driver_connection.execute(statement)  # type: ignore[union-attr]


def run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        if connection.in_transaction():
            connection.commit()  # PRAGMA foreign_keys is ignored inside a transaction
        _pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        if connection.in_transaction():
            connection.commit()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")
    finally:
        if connection.in_transaction():
            connection.rollback()
        if sqlite:
            _pragma(connection, "PRAGMA foreign_keys=ON")


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    run(shared)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        run(conn)
