"""The access layer's parts, built once in the server's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from flexi.access import usage_journal
from flexi.access.authn import Authenticator
from flexi.access.gate import AccessGate
from flexi.access.policy import PolicyBook
from flexi.access.privacy import purge_loop
from flexi.access.quota import QuotaLedger
from flexi.access.shared_state import SharedState
from flexi.access.throttle import LoginThrottle
from flexi.access.usage import UsageWriter
from flexi.access.usage_journal import sweep_loop
from flexi.config import Settings
from flexi.db.engine import make_engine, session_factory
from flexi.db.migrate import upgrade
from flexi.db.pseudonym import load_key


@dataclass
class AccessService:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    pseudonym_key: bytes
    authn: Authenticator
    policies: PolicyBook
    quotas: QuotaLedger
    usage: UsageWriter
    gate: AccessGate
    throttle: LoginThrottle  # failed sign-ins: in memory, or in Redis shared by the replicas
    shared: SharedState | None = None  # FLEXI_REDIS_URL: what replicas share beyond the database

    @classmethod
    def open(cls, settings: Settings) -> AccessService:
        """Connect, migrate to the newest schema, and build every part."""
        engine = make_engine(settings.database_url, settings.home, pool_size=20, max_overflow=20) \
            if settings.database_url else make_engine(None, settings.home)
        upgrade(engine)
        key = load_key(settings.home)
        # SQLite reads run on the event loop (~0.1 ms, never blocked by writers in WAL mode); they get
        # their own small pool so that busy worker threads can never leave the loop waiting for a connection
        file_backed = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")
        reads = make_engine(engine.url, settings.home, pool_size=2, max_overflow=0) if file_backed else engine
        authn = Authenticator(reads, settings, key)
        policies = PolicyBook(reads, settings.model_access, settings.role_max_context, settings.role_max_output)
        quotas = QuotaLedger(engine, settings.default_role_quotas)
        usage = UsageWriter(engine, quotas, settings)
        authn.on_touch = usage.touch
        gate = AccessGate(settings, engine, authn, policies, quotas, usage)
        shared = SharedState.connect(settings.redis_url, settings.redis_failure, settings.redis_lease_seconds) \
            if settings.redis_url else None
        gate.leases = shared.leases if shared is not None else None
        throttle = shared.throttle if shared is not None else LoginThrottle()
        return cls(settings, engine, session_factory(engine), key, authn, policies, quotas, usage, gate, throttle,
                   shared)

    async def start(self) -> None:
        await self.usage.start()
        self._purge = asyncio.create_task(purge_loop(self.engine, self.settings), name="flexi-retention-purge")
        self._sweep = asyncio.create_task(sweep_loop(self.engine, self.settings), name="flexi-usage-sweep")

    async def close(self) -> None:
        purge = getattr(self, "_purge", None)
        if purge is not None:
            purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purge
        await usage_journal.stop(getattr(self, "_sweep", None))
        await self.gate.stop()
        await self.usage.stop()
        if self.shared is not None:
            await self.shared.close()
        self.authn.engine.dispose()
        self.engine.dispose()
