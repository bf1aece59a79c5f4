"""Model aliases added by administrators at run time, stored next to config.toml's `[aliases]`.

Why here: `/admin/aliases`, `flexi alias` and every replica's reload read and write the same rows with
the same rules. An alias is one hop to a real model: its name may not be a model that exists (409),
its target must exist and may not be an alias itself (no chains, so no cycles), and an alias of
config.toml is read-only here (it changes with the file). `config_versions["aliases"]` is raised in the
transaction of every change, so replicas notice it by reading one row (like remote backends).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flexi.access.admin_ops.checks import add_row
from flexi.access.admin_ops.config_versions import bump_config_version, config_version
from flexi.access.admin_ops.errors import AdminError
from flexi.db.models import ModelAlias
from flexi.store.names import InvalidModelName, ModelName, parse_model_name

VERSION_NAME = "aliases"


@dataclass(frozen=True)
class AliasEntry:
    """One alias: the name as written (what model lists show) and the model it stands for."""

    name: str
    target: str
    source: str = "admin"  # or "config"


def alias_key(name: str) -> ModelName:
    """The canonical form aliases are compared in (case and the default tag ignored, like model names)."""
    return parse_model_name(name).canonical()


def _key(name: str, what: str) -> ModelName:
    try:
        return alias_key(name)
    except InvalidModelName as exc:
        raise AdminError(f"{what} {name[:80]!r} is not a valid model name ({exc.message})", 400,
                         key="alias_bad_name", values={"name": name[:80], "reason": exc.message}) from None


def aliases_version(session: Session) -> int:
    """The change counter of admin-added aliases (0 before the first change)."""
    return config_version(session, VERSION_NAME)


def _changed(session: Session) -> None:
    bump_config_version(session, VERSION_NAME)


def stored_aliases(session: Session) -> list[AliasEntry]:
    """The admin-added aliases in the order they were added."""
    return [AliasEntry(row.display, row.target) for row in session.scalars(select(ModelAlias).order_by(ModelAlias.id))]


def set_alias(session: Session, name: str, target: str, *, model_exists: Callable[[str], bool],
              configured: Mapping[str, str], replace: bool = False, created_by: int | None = None) -> AliasEntry:
    """Store `name` → `target` (with `replace`, change an admin-added alias's target).

    Refused: a name that is a model already or an alias of config.toml (409), an existing alias without
    `replace` (409), an unknown target (400), a target that is an alias itself (400: chains and cycles)."""
    key, target_key = _key(name, "alias"), _key(target, "target")
    if key == target_key:
        raise AdminError(f"alias {name!r} cannot point at itself", 400, key="alias_self", values={"name": name})
    config_keys = {alias_key(n): t for n, t in configured.items()}
    if key in config_keys:
        raise AdminError(f"alias {name!r} comes from the configuration file (config.toml) and cannot be changed here",
                         409, key="alias_from_config", values={"name": name})
    if model_exists(name):
        raise AdminError(f"{name!r} is a model already; an alias cannot hide it", 409,
                         key="alias_is_model", values={"name": name})
    rows = list(session.scalars(select(ModelAlias)))
    if target_key in config_keys or any(alias_key(r.name) == target_key for r in rows):
        raise AdminError(f"{target!r} is an alias itself; point {name!r} at the model it stands for", 400,
                         key="alias_chain", values={"name": name, "target": target})
    pointing = [n for n, t in configured.items() if alias_key(t) == key] + \
        [r.display for r in rows if alias_key(r.target) == key]
    if pointing:
        raise AdminError(f"alias {pointing[0]!r} points at {name!r}; an alias cannot be the target of another", 400,
                         key="alias_chain", values={"name": pointing[0], "target": name})
    if not model_exists(target):
        raise AdminError(f"target model {target!r} not found", 400, key="alias_unknown_target", values={"target": target})
    row = next((r for r in rows if alias_key(r.name) == key), None)
    if row is not None and not replace:
        raise AdminError(f"an alias named {name!r} exists already", 409, key="alias_exists", values={"name": name})
    if row is None:
        add_row(session, ModelAlias(name=str(key), display=name, target=target, created_by=created_by),
                f"an alias named {name!r} exists already")
    else:
        row.display, row.target = name, target
    _changed(session)
    return AliasEntry(name, target)


def delete_alias(session: Session, name: str, configured: Collection[str]) -> None:
    """Remove an admin-added alias; one of config.toml is a 409, an unknown one a 404."""
    key = _key(name, "alias")
    if key in {alias_key(n) for n in configured}:
        raise AdminError(f"alias {name!r} comes from the configuration file (config.toml) and cannot be removed here",
                         409, key="alias_from_config", values={"name": name})
    row = next((r for r in session.scalars(select(ModelAlias)) if alias_key(r.name) == key), None)
    if row is None:
        raise AdminError(f"alias {name!r} not found", 404, key="alias_not_found", values={"name": name})
    session.delete(row)
    _changed(session)


def alias_view(entry: AliasEntry) -> dict[str, Any]:
    return {"name": entry.name, "target": entry.target, "source": entry.source}
