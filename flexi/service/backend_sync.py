"""Keeps `RemoteBackends` in step with config.toml's backends plus those admins add at run time.

Several Flexi processes share one database, and an admin's change reaches only one of them. So each
process follows the backends' change counter (`config_versions["backends"]`, see `PolledConfig`) and
reloads when it moved; the process that made the change reloads at once (`refresh`). A backend of
config.toml wins over an admin-added one of the same name (the API refuses such a name; this covers a
config file edited afterwards).
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from flexi.access import admin_ops as ops
from flexi.config import BackendConfig, Settings
from flexi.service.config_poll import POLL_SECONDS, PolledConfig
from flexi.service.remote import RemoteBackends

log = logging.getLogger("flexi.remote")

__all__ = ["POLL_SECONDS", "BackendSync"]


class BackendSync(PolledConfig[list[BackendConfig]]):
    """The backends of config.toml (read-only) and of the database, applied to `remote`."""

    task_name = "flexi-backend-sync"
    what = "stored backends"

    def __init__(self, settings: Settings, engine: Engine, remote: RemoteBackends,
                 interval: float = POLL_SECONDS) -> None:
        super().__init__(engine, interval)
        self.configured = list(settings.backends)
        self.remote = remote
        self.stored: list[BackendConfig] = []

    @property
    def config_names(self) -> list[str]:
        return [c.name for c in self.configured]

    def read_version(self, session: Session) -> int:
        return ops.backends_version(session)

    def read(self, session: Session) -> list[BackendConfig]:
        return ops.stored_backends(session)

    def merged(self, stored: list[BackendConfig]) -> list[BackendConfig]:
        taken = {name.lower() for name in self.config_names}
        extra = []
        for config in stored:
            if config.name.lower() in taken:
                log.warning("backend %s is in the configuration file and the database; the file's wins", config.name)
                continue
            taken.add(config.name.lower())
            extra.append(config)
        return self.configured + extra

    def apply(self, data: list[BackendConfig]) -> None:
        try:
            self.remote.reload(self.merged(data))
        except ValueError as exc:  # the API validates names; a row written by hand may not be
            log.error("stored backends not applied: %s", exc)
        self.stored = data
