"""Usage records and quota settlement, written off the request path.

A finished request hands one `UsageEntry` to the writer; a background task
writes whatever has accumulated in one transaction (usage rows, the quota
corrections and, only when an admin enabled content logging for a named
purpose, the prompt and response text). Requests never wait for this write,
and a burst of 100 finishing streams costs one transaction, not 100.

A generation is journaled: the gate also hands in a "running" entry when it
starts, so that a replica killed mid-stream leaves its in-flight requests on
record (flexi.access.usage_journal closes them). Start and end share a
`request_id`, and the writer keeps the database work as it was:
- a start whose end is in the same batch is dropped (one INSERT of the end, as before);
- a start alone is INSERTed as a "running" row;
- an end whose start row was committed by an earlier batch UPDATEs that row
  (status, tokens, times) — or is INSERTed if the row is not there after all.
Refusals, loads and embeddings are not journaled (one INSERT at their end), and
quota settlement happens once, with the end, exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from flexi.access.quota import QuotaLedger, Reservation
from flexi.access.usage_journal import RUNNING
from flexi.config import Settings
from flexi.db.engine import write_transaction
from flexi.db.models import ApiKey, ContentRecord, UsageRecord, utcnow

log = logging.getLogger("flexi.usage")
COALESCE_SECONDS = 0.1
RETRY_SECONDS = 2.0
MAX_PENDING = 100_000


@dataclass
class UsageEntry:
    user_pseudonym: str
    key_id: int | None
    course_id: int | None
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    queue_ms: int
    generation_ms: int
    status: str  # ok | cancelled | error | rejected, or "running" for the start of a journaled generation
    reservation: Reservation = field(default_factory=Reservation)
    at: datetime = field(default_factory=utcnow)
    prompt_text: str | None = None
    response_text: str | None = None
    assistant_id: int | None = None  # a chat through a course assistant
    template_id: int | None = None  # a run of a prompt template, and its version
    template_version: int | None = None
    request_id: str | None = None  # a journaled generation: joins its start to its end (unique)
    replica: str | None = None  # the replica that runs it (Settings.replica_name)
    end_user: str | None = None  # pseudonym of a service key's end user (OpenAI `user`), never the raw id

    @property
    def billed_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageWriter:
    def __init__(self, engine: Engine, quotas: QuotaLedger, settings: Settings) -> None:
        self.engine = engine
        self.quotas = quotas
        self.settings = settings
        self._pending: list[UsageEntry] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._touches: set[int] = set()
        self._journaled: set[str] = set()  # request ids whose "running" row is committed, not yet ended
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def content_logging(self) -> bool:
        return bool(self.settings.content_log_purpose)

    def touch(self, key_id: int) -> None:
        """Store a key's `last_used_at` with the next batch (called from any thread)."""
        self._touches.add(key_id)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def submit(self, entry: UsageEntry) -> None:
        """Queue one record (never blocks, never raises)."""
        if not self.content_logging:
            entry.prompt_text = entry.response_text = None
        self._pending.append(entry)
        self._idle.clear()
        self._wake.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="flexi-usage-writer")

    async def stop(self) -> None:
        """Write what is pending, then end the task."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.quotas.executor is not None:
            self.quotas.executor.shutdown(wait=True)

    async def flush(self) -> None:
        """Wait until everything submitted so far is in the database (tests, shutdown)."""
        if self._task is None or self._task.done():
            if self._pending:
                batch, self._pending = self._pending, []
                await asyncio.get_running_loop().run_in_executor(self.quotas.executor, self._write, batch)
            self._idle.set()
            return
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(COALESCE_SECONDS)  # gather the records of a burst into one transaction
            self._wake.clear()
            batch, self._pending = self._pending, []
            touches, self._touches = self._touches, set()
            if batch or touches:
                try:
                    await asyncio.get_running_loop().run_in_executor(self.quotas.executor, self._write, batch, touches)
                except Exception:  # the database is down: keep serving, keep the records, say so loudly
                    log.exception("could not write %d usage records; retrying in %.0f s", len(batch), RETRY_SECONDS)
                    self._pending[:0] = batch[-MAX_PENDING:]
                    self._touches |= touches
                    if len(self._pending) > MAX_PENDING:  # bounded: the oldest are given up
                        log.error("dropping %d usage records", len(self._pending) - MAX_PENDING)
                        del self._pending[:len(self._pending) - MAX_PENDING]
                    await asyncio.sleep(RETRY_SECONDS)
                    self._wake.set()
            if not self._pending:
                self._idle.set()

    def _write(self, batch: list[UsageEntry], touches: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        try:
            started, ended = self._write_once(batch, touches)
        except IntegrityError:
            # a key, course or assistant was deleted while its request ran: keep the numbers, drop the dangling ids
            for entry in batch:
                entry.key_id = entry.course_id = entry.assistant_id = entry.template_id = None
            try:
                started, ended = self._write_once(batch, touches)
            except IntegrityError:
                started, ended = self._write_each(batch)
        self._journaled |= started
        self._journaled -= ended

    def _write_each(self, batch: list[UsageEntry]) -> tuple[set[str], set[str]]:
        """A batch that still conflicts (written once already, when a COMMIT's answer was lost and the batch
        came back): entry by entry, where a row that exists counts as written, so one entry never stalls
        every later record (each retry would fail the same way)."""
        started: set[str] = set()
        ended: set[str] = set()
        for entry in batch:
            try:
                s, e = self._write_once([entry], set())
            except IntegrityError:
                if not entry.request_id:
                    log.error("usage record of %s at %s could not be written; dropped", entry.model, entry.at)
                    continue
                if entry.status == RUNNING:  # its row is there already
                    started.add(entry.request_id)
                    continue
                self._journaled.add(entry.request_id)  # its row is there: end it by UPDATE
                try:
                    s, e = self._write_once([entry], set())
                except IntegrityError:
                    log.error("usage record %s could not be written; dropped", entry.request_id)
                    continue
            started |= s
            ended |= e
        return started, ended

    def _write_once(self, batch: list[UsageEntry], touches: set[int]) -> tuple[set[str], set[str]]:
        """One transaction; returns the request ids whose "running" row it inserted, and those it ended."""
        with write_transaction(self.engine) as conn:
            if touches:
                conn.execute(update(ApiKey).where(ApiKey.id.in_(sorted(touches))).values(last_used_at=utcnow()))
            if not batch:
                return set(), set()
            inserts, updates = self._plan(batch)
            ends = [e for e in batch if e.status != RUNNING]
            # counters in primary-key order, as admission takes them: no lock-order deadlock between replicas
            for entry in sorted(ends, key=lambda e: sorted(e.reservation.counters)):
                self.quotas.settle(conn, entry.reservation, entry.billed_tokens)
            inserts += _update(conn, updates)
            if inserts:
                conn.execute(insert(UsageRecord), [_row(e) for e in inserts])
            content = [e for e in ends if e.prompt_text is not None and self.settings.content_log_purpose]
            if content:
                conn.execute(insert(ContentRecord), [
                    {"at": e.at, "user_pseudonym": e.user_pseudonym, "purpose": self.settings.content_log_purpose,
                     "model": e.model, "endpoint": e.endpoint, "prompt": e.prompt_text or "",
                     "response": e.response_text or ""} for e in content])
        started = {e.request_id for e in inserts if e.status == RUNNING and e.request_id}
        return started, {e.request_id for e in ends if e.request_id}

    def _plan(self, batch: list[UsageEntry]) -> tuple[list[UsageEntry], list[UsageEntry]]:
        """Which entries become new rows, and which ends update the "running" row an earlier batch wrote."""
        ended = {e.request_id for e in batch if e.status != RUNNING and e.request_id}
        started_here = {e.request_id for e in batch if e.status == RUNNING}
        inserts: list[UsageEntry] = []
        updates: list[UsageEntry] = []
        for e in batch:
            if e.status == RUNNING:
                if e.request_id not in ended:  # an end in this batch replaces its start
                    inserts.append(e)
            elif e.request_id and e.request_id not in started_here and e.request_id in self._journaled:
                updates.append(e)
            else:
                inserts.append(e)
        return inserts, updates


def _row(e: UsageEntry) -> dict[str, object]:
    return {"at": e.at, "user_pseudonym": e.user_pseudonym, "key_id": e.key_id, "course_id": e.course_id,
            "model": e.model, "endpoint": e.endpoint, "prompt_tokens": e.prompt_tokens,
            "completion_tokens": e.completion_tokens, "queue_ms": e.queue_ms, "generation_ms": e.generation_ms,
            "status": e.status, "assistant_id": e.assistant_id, "request_id": e.request_id, "replica": e.replica,
            "end_user": e.end_user,
            "template_id": e.template_id, "template_version": e.template_version}


_END = update(UsageRecord).where(UsageRecord.request_id == bindparam("rid")).values(
    at=bindparam("e_at"), prompt_tokens=bindparam("e_prompt"), completion_tokens=bindparam("e_completion"),
    queue_ms=bindparam("e_queue"), generation_ms=bindparam("e_generation"), status=bindparam("e_status"))


def _update(conn: Connection, ends: list[UsageEntry]) -> list[UsageEntry]:
    """Complete the "running" rows of `ends` (who and what stay as the start wrote them: an erasure
    meanwhile keeps its effect); returns the ends whose row is not there, to be inserted instead."""
    if not ends:
        return []
    ids = [e.request_id for e in ends]
    present = set(conn.scalars(select(UsageRecord.request_id).where(UsageRecord.request_id.in_(ids))))
    found = [e for e in ends if e.request_id in present]
    if found:
        conn.execute(_END, [{"rid": e.request_id, "e_at": e.at, "e_prompt": e.prompt_tokens,
                             "e_completion": e.completion_tokens, "e_queue": e.queue_ms,
                             "e_generation": e.generation_ms, "e_status": e.status} for e in found])
    return [e for e in ends if e.request_id not in present]
