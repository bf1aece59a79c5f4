"""Remote backends added by administrators at run time, stored in the database next to config.toml's.

Why here: `/admin/backends` and every replica's reload read and write the same rows, with the same rules.
A stored row is a `BackendConfig` (validated before it is written and again when read), so an added
backend obeys exactly what a `[[backends]]` entry does (URL checks, external ones only when enabled).
Backends of config.toml are read-only here: they change with the file. `config_versions["backends"]` is
raised in the transaction of every change, so replicas notice a change by reading one row.

The `api_key` is stored as given: Flexi sends it as a bearer token, so it cannot be hashed. No view
returns it (`backend_view` says only whether one is set).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from flexi.access.admin_ops.checks import add_row
from flexi.access.admin_ops.config_versions import bump_config_version, config_version
from flexi.access.admin_ops.errors import AdminError
from flexi.config import BackendConfig
from flexi.db.models import RemoteBackend

log = logging.getLogger("flexi.admin.backends")

VERSION_NAME = "backends"
SOURCES = ("config", "admin")


def backends_version(session: Session) -> int:
    """The change counter of admin-added backends (0 before the first change)."""
    return config_version(session, VERSION_NAME)


def _changed(session: Session) -> None:
    bump_config_version(session, VERSION_NAME)


def _config(row: RemoteBackend) -> BackendConfig:
    return BackendConfig(name=row.name, kind=row.kind, url=row.url, models=row.models, api_key=row.api_key,
                         max_concurrency=row.max_concurrency, external=row.external, enabled=row.enabled,
                         context_length=row.context_length, timeout=row.timeout,
                         capabilities=tuple(row.capabilities))  # type: ignore[arg-type]


def stored_backends(session: Session) -> list[BackendConfig]:
    """The admin-added backends in the order they were added; a row that no longer validates is skipped."""
    configs = []
    for row in session.scalars(select(RemoteBackend).order_by(RemoteBackend.id)):
        try:
            configs.append(_config(row))
        except ValidationError as exc:
            log.error("stored backend %s is not valid and stays off: %s", row.name, exc.errors()[0].get("msg"))
    return configs


def _find(session: Session, name: str) -> RemoteBackend | None:
    wanted = name.lower()
    return next((row for row in session.scalars(select(RemoteBackend)) if row.name.lower() == wanted), None)


def add_backend(session: Session, config: BackendConfig, config_names: Collection[str],
                created_by: int | None = None) -> RemoteBackend:
    """Store `config`; a name already used (config.toml or database, ignoring case) is a 409."""
    if config.name.lower() in {name.lower() for name in config_names} or _find(session, config.name) is not None:
        raise AdminError(f"a backend named {config.name!r} exists already", 409)
    row = RemoteBackend(name=config.name, kind=config.kind, url=config.url, models=dict(config.models),
                        api_key=config.api_key.get_secret_value() if config.api_key else None,
                        max_concurrency=config.max_concurrency, external=config.external, enabled=config.enabled,
                        context_length=config.context_length, timeout=config.timeout,
                        capabilities=list(config.capabilities), created_by=created_by)
    add_row(session, row, f"a backend named {config.name!r} exists already")
    _changed(session)
    return row


def delete_backend(session: Session, name: str, config_names: Collection[str]) -> None:
    """Remove an admin-added backend; one of config.toml is a 409 (it changes with the file only)."""
    if name.lower() in {n.lower() for n in config_names}:
        raise AdminError(f"backend {name!r} comes from the configuration file (config.toml or FLEXI_BACKENDS) "
                         "and cannot be removed here; change the file and restart", 409)
    row = _find(session, name)
    if row is None:
        raise AdminError(f"backend {name!r} not found", 404)
    session.delete(row)
    _changed(session)


def backend_view(config: BackendConfig, source: str) -> dict[str, Any]:
    """JSON-ready facts of a backend, never its api_key."""
    return {"name": config.name, "source": source, "kind": config.kind, "url": config.url,
            "models": dict(config.models), "max_concurrency": config.max_concurrency, "external": config.external,
            "enabled": config.active, "api_key_set": config.api_key is not None,
            "context_length": config.context_length, "timeout": config.timeout,
            "capabilities": list(config.capabilities)}
