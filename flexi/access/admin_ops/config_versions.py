"""Change counters of configuration kept in the database (remote backends, model aliases): one
`config_versions` row per kind, bumped in the transaction that changes it, so other replicas see a
change by polling one integer (flexi/service/config_poll.py) instead of re-reading every row."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from flexi.access.admin_ops.checks import add_row
from flexi.db.models import ConfigVersion


def config_version(session: Session, name: str) -> int:
    """The change counter of `name` (0 before the first change)."""
    return session.scalar(select(ConfigVersion.version).where(ConfigVersion.name == name)) or 0


def bump_config_version(session: Session, name: str) -> None:
    """Count one change of `name` in the current transaction."""
    row = session.get(ConfigVersion, name)
    if row is None:
        add_row(session, ConfigVersion(name=name, version=1), "a concurrent change conflicted; try again")
    else:
        row.version += 1
    session.flush()
