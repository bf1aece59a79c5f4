"""The usage writer keeps records through a database outage and writes them once it is back."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

import flexi.access.usage as usage_module
from flexi.access.service import AccessService
from flexi.access.usage import UsageEntry
from flexi.config import load_settings
from flexi.db.models import UsageRecord


def test_records_survive_a_failed_write(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(usage_module, "RETRY_SECONDS", 0.05)
    service = AccessService.open(load_settings(home=tmp_path))
    real = service.usage._write_once
    failures = {"left": 2}

    def flaky(batch, touches):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database unavailable")
        return real(batch, touches)

    monkeypatch.setattr(service.usage, "_write_once", flaky)

    async def run() -> None:
        await service.usage.start()
        for n in range(3):
            service.usage.submit(UsageEntry("p" * 64, None, None, "m", "/api/chat", n, 1, 0, 0, "ok"))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not service.usage._pending and failures["left"] == 0:
                break
        await service.usage.stop()

    asyncio.run(run())
    with service.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(UsageRecord)) == 3
    service.engine.dispose()
