"""Close the usage rows of generations whose replica ended before they did.

A generation's usage row is written when it starts (status "running", flexi.access.usage) and
completed at its end. A replica killed mid-stream (SIGKILL, power loss) or cut off from the
database never completes its rows; this sweep marks them "interrupted" so that no request is
lost from the records and none stays "running" forever:

- at a replica's start, its own leftover running rows (same `Settings.replica_name`) at once: it
  was restarted, so nothing of it still runs;
- on every replica, at start and then every `SWEEP_SECONDS`, any running row older than the
  longest a request may take (FLEXI_REQUEST_TIMEOUT) plus `GRACE_SECONDS`: its replica is gone.

An interrupted row keeps what was known at the start (who, which model, course, key, when) and
records 0 tokens: what the dead replica delivered is unknown. Its quota reservation stays taken
in quota_counters (it was never settled), so an interruption never gives anybody tokens back
that they may have used. If the request does end after all (a replica that had only lost the
database), its final figures overwrite the row, whatever the sweep did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, update

from flexi.config import Settings
from flexi.db.engine import write_transaction
from flexi.db.models import UsageRecord, utcnow

log = logging.getLogger("flexi.usage")
SWEEP_SECONDS = 60.0
GRACE_SECONDS = 60.0
RUNNING, INTERRUPTED = "running", "interrupted"


def interrupt_stale(engine: Engine, started_before: datetime) -> int:
    """Mark every running row that started before `started_before` interrupted; returns how many."""
    with write_transaction(engine) as conn:
        return conn.execute(update(UsageRecord).where(UsageRecord.status == RUNNING,
                                                      UsageRecord.at < started_before)
                            .values(status=INTERRUPTED)).rowcount


def interrupt_own(engine: Engine, replica: str, started_before: datetime) -> int:
    """Mark the running rows `replica` started before `started_before` (its own start) interrupted:
    it was restarted, so none of them still runs. (Worker processes of one replica share its name;
    a sibling's row closed too early this way is completed again by its own end.)"""
    with write_transaction(engine) as conn:
        return conn.execute(update(UsageRecord).where(UsageRecord.status == RUNNING,
                                                      UsageRecord.replica == replica,
                                                      UsageRecord.at < started_before)
                            .values(status=INTERRUPTED)).rowcount


def stale_before(settings: Settings, now: datetime | None = None) -> datetime:
    """Running rows older than this outlived any request of a living replica."""
    return (now or utcnow()) - timedelta(seconds=settings.request_timeout + GRACE_SECONDS)


async def sweep_loop(engine: Engine, settings: Settings) -> None:
    """Close this replica's leftovers, then sweep everybody's stale rows every `SWEEP_SECONDS`."""
    own, booted = True, utcnow()
    while True:
        try:
            if own:
                n = await asyncio.to_thread(interrupt_own, engine, settings.replica_name, booted)
                own = False
                if n:
                    log.warning("%d requests of this replica (%s) were cut off by its last stop: usage rows "
                                "marked interrupted", n, settings.replica_name)
            n = await asyncio.to_thread(interrupt_stale, engine, stale_before(settings))
            if n:
                log.warning("%d requests of a replica that stopped mid-request: usage rows marked interrupted", n)
        except Exception:  # the database is away: try again next round
            log.exception("could not sweep interrupted usage rows")
        await asyncio.sleep(SWEEP_SECONDS)


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
