"""Run-time configuration that several Flexi processes share through the database, kept in step.

An admin's change reaches one process; the others must follow. Each kind of run-time configuration
(remote backends, model aliases) has a change counter (`config_versions`, one row per kind) raised in the
transaction of every change. A `PolledConfig` reads its counter every `interval` seconds off the event
loop (a read that never takes SQLite's write lock) and reloads only when it moved; the process that made
the change reloads at once (`refresh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("flexi.config")

POLL_SECONDS = 2.0
T = TypeVar("T")


class PolledConfig(Generic[T]):
    """One kind of stored configuration: `read_version`/`read` from the database, `apply` to this process."""

    task_name = "flexi-config-sync"
    what = "stored configuration"

    def __init__(self, engine: Engine, interval: float = POLL_SECONDS) -> None:
        # plain sessions: read-only, so on SQLite they never take the write lock (admin sessions BEGIN IMMEDIATE)
        self.sessions: sessionmaker[Session] = sessionmaker(engine)
        self.interval = interval
        self.version: int | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def read_version(self, session: Session) -> int:
        raise NotImplementedError

    def read(self, session: Session) -> T:
        raise NotImplementedError

    def apply(self, data: T) -> None:
        raise NotImplementedError

    def _version(self) -> int:
        with self.sessions() as session:
            return self.read_version(session)

    def _read(self) -> tuple[int, T]:
        with self.sessions() as session:
            return self.read_version(session), self.read(session)

    async def refresh(self, force: bool = True) -> None:
        """Reload if the stored configuration changed (always with `force`)."""
        async with self._lock:
            if not force and await asyncio.to_thread(self._version) == self.version:
                return
            version, data = await asyncio.to_thread(self._read)
            self.apply(data)
            self.version = version

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._poll(), name=self.task_name)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh(force=False)
            except Exception:  # noqa: BLE001 (a database hiccup: the next round tries again)
                log.warning("could not read the %s; trying again", self.what, exc_info=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
