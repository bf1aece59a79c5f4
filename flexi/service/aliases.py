"""Model aliases: names that stand for a real model (`gpt-4o` → `llama3.3`), for clients with fixed lists.

Several Moodle plugins offer only a fixed list of model names. An alias maps such a name to a model
Flexi has, and FOLLOWS it (unlike `flexi cp`, which copies): it is resolved on every request, so a
changed target or a model replaced under the same name applies at once. Sources: `[aliases]` of
config.toml (read-only at run time; it wins on a clash) and those admins add at run time (database,
`flexi.access.admin_ops.aliases`), which every replica follows through the `config_versions["aliases"]`
counter like remote backends (`PolledConfig`).

An alias is exactly one hop: its target is looked up as a model, never as another alias, so chains and
cycles cannot resolve (the admin API refuses them too). A real model of the same name always wins.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from flexi.access import admin_ops as ops
from flexi.access.admin_ops import AliasEntry
from flexi.service.config_poll import POLL_SECONDS, PolledConfig
from flexi.store.names import InvalidModelName, ModelName

log = logging.getLogger("flexi.aliases")


def _key(name: str) -> ModelName | None:
    try:
        return ops.alias_key(name)
    except InvalidModelName:
        return None


class ModelAliasTable(PolledConfig[list[AliasEntry]]):
    """The aliases of config.toml and of the database, by canonical name."""

    task_name = "flexi-alias-sync"
    what = "stored model aliases"

    def __init__(self, configured: Mapping[str, str], engine: Engine, interval: float = POLL_SECONDS) -> None:
        super().__init__(engine, interval)
        self.configured = self._valid_config(configured)
        self.stored: list[AliasEntry] = []
        self._by_key: dict[ModelName, AliasEntry] = {}
        self.apply([])

    @staticmethod
    def _valid_config(configured: Mapping[str, str]) -> dict[str, str]:
        """config.toml's aliases that can work; the others are logged and left out (the server still starts)."""
        names = {k for k in (_key(n) for n in configured) if k is not None}
        valid: dict[str, str] = {}
        for name, target in configured.items():
            key, target_key = _key(name), _key(target)
            if key is None or target_key is None:
                log.error("alias %r → %r in the configuration file is not a valid model name; ignored", name, target)
            elif target_key in names:
                log.error("alias %r in the configuration file points at another alias (%r); chains are not "
                          "allowed, ignored", name, target)
            else:
                valid[name] = target
        return valid

    @property
    def config_names(self) -> list[str]:
        return list(self.configured)

    def read_version(self, session: Session) -> int:
        return ops.aliases_version(session)

    def read(self, session: Session) -> list[AliasEntry]:
        return ops.stored_aliases(session)

    def apply(self, data: list[AliasEntry]) -> None:
        table: dict[ModelName, AliasEntry] = {}
        for name, target in self.configured.items():
            table[ops.alias_key(name)] = AliasEntry(name, target, "config")
        for entry in data:
            key = _key(entry.name)
            if key is None or _key(entry.target) is None:
                log.error("stored alias %r → %r is not valid; ignored", entry.name, entry.target)
            elif key in table:
                log.warning("alias %s is in the configuration file and the database; the file's wins", entry.name)
            else:
                table[key] = entry
        self._by_key, self.stored = table, data

    def get(self, name: str) -> AliasEntry | None:
        """The alias called `name` (case and a missing `:latest` ignored), or None."""
        key = _key(name)
        return self._by_key.get(key) if key is not None else None

    def entries(self) -> list[AliasEntry]:
        return list(self._by_key.values())
