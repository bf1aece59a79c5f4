"""Keeps `RemoteBackends` in step with config.toml's backends plus those admins add at run time.

Several Flexi processes share one database, and an admin's change reaches only one of them. So each
process reads the backends' change counter (`config_versions`, one row) every `interval` seconds off
the event loop (a read that never takes SQLite's write lock) and reloads when it moved; the process that made the change reloads at once
(`refresh`). A backend of config.toml wins over an admin-added one of the same name (the API refuses
such a name; this covers a config file edited afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from flexi.access import admin_ops as ops
from flexi.config import BackendConfig, Settings
from flexi.service.remote import RemoteBackends

log = logging.getLogger("flexi.remote")

POLL_SECONDS = 2.0


class BackendSync:
    """The backends of config.toml (read-only) and of the database, applied to `remote`."""

    def __init__(self, settings: Settings, engine: Engine, remote: RemoteBackends,
                 interval: float = POLL_SECONDS) -> None:
        self.configured = list(settings.backends)
        # plain sessions: read-only, so on SQLite they never take the write lock (admin sessions BEGIN IMMEDIATE)
        self.sessions: sessionmaker[Session] = sessionmaker(engine)
        self.remote = remote
        self.interval = interval
        self.version: int | None = None
        self.stored: list[BackendConfig] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def config_names(self) -> list[str]:
        return [c.name for c in self.configured]

    def _read_version(self) -> int:
        with self.sessions() as session:
            return ops.backends_version(session)

    def _read(self) -> tuple[int, list[BackendConfig]]:
        with self.sessions() as session:
            return ops.backends_version(session), ops.stored_backends(session)

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

    async def refresh(self, force: bool = True) -> None:
        """Reload if the stored backends changed (always with `force`)."""
        async with self._lock:
            if not force and await asyncio.to_thread(self._read_version) == self.version:
                return
            version, stored = await asyncio.to_thread(self._read)
            try:
                self.remote.reload(self.merged(stored))
            except ValueError as exc:  # the API validates names; a row written by hand may not be
                log.error("stored backends not applied: %s", exc)
            self.version, self.stored = version, stored

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._poll(), name="flexi-backend-sync")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh(force=False)
            except Exception:  # noqa: BLE001 (a database hiccup: the next round tries again)
                log.warning("could not read the stored backends; trying again", exc_info=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
