"""The usage journal: a generation's row is written when it starts and completed at its end, with no
more database work than before (the writer's batching rules), and the sweep closes the rows of
replicas that died mid-request. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine, event, select

from flexi.access.caller import Caller
from flexi.access.credentials import Credential
from flexi.access.quota import QuotaLedger
from flexi.access.service import AccessService
from flexi.access.shared_state import Lease
from flexi.access.usage import UsageEntry, UsageWriter
from flexi.access.usage_journal import interrupt_own, interrupt_stale, stale_before
from flexi.access.usage_queries import usage_summary
from flexi.config import load_settings
from flexi.db.engine import session_factory
from flexi.db.models import UsageRecord, utcnow
from flexi.engine.types import GenerationRequest, GenerationStats, TextChunk
from tests.access_helpers import ServerDB

MODEL = "smollm2:135m"


@pytest.fixture
def writer(db: Engine, tmp_path: Path) -> UsageWriter:
    return UsageWriter(db, QuotaLedger(db), load_settings(home=tmp_path))


@pytest.fixture
def statements(db: Engine) -> Iterator[list[str]]:
    """The INSERT and UPDATE statements on usage_records, as sent to the database."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        verb = sql.lstrip().split(None, 1)[0].upper()
        if "usage_records" in sql and verb in ("INSERT", "UPDATE"):
            seen.append(verb)

    event.listen(db, "before_cursor_execute", record)
    yield seen
    event.remove(db, "before_cursor_execute", record)


def _start(rid: str, replica: str = "r1", **kw: Any) -> UsageEntry:
    return UsageEntry("p" * 64, None, None, MODEL, "/api/chat", 0, 0, 0, 0, "running", request_id=rid,
                      replica=replica, **kw)


def _end(rid: str | None, status: str = "ok", prompt: int = 7, completion: int = 3) -> UsageEntry:
    return UsageEntry("p" * 64, None, None, MODEL, "/api/chat", prompt, completion, 5, 50, status, request_id=rid,
                      replica="r1" if rid else None)


def _rows(db: Engine) -> list[UsageRecord]:
    with session_factory(db)() as s:
        return list(s.scalars(select(UsageRecord).order_by(UsageRecord.id)))


def test_a_batch_written_twice_stalls_nothing(db: Engine, writer: UsageWriter) -> None:
    """A COMMIT whose answer was lost brings its batch back: the rows are there already. The writer must
    not fail on it forever (every later record would queue behind it): existing rows count as written."""
    first = [_start("x"), _start("y")]
    writer._write(first)
    again = [_start("x"), _end("y"), _start("z")]  # the batch came back, with new entries merged in
    writer._write(again)
    by_id = {row.request_id: row for row in _rows(db)}
    assert sorted(by_id) == ["x", "y", "z"]
    assert (by_id["x"].status, by_id["y"].status, by_id["z"].status) == ("running", "ok", "running")
    assert by_id["y"].prompt_tokens == 7 and writer._journaled == {"x", "z"}


def test_a_start_and_its_end_in_one_batch_are_one_insert(db: Engine, writer: UsageWriter,
                                                         statements: list[str]) -> None:
    writer._write([_start("a"), _end("a")])
    assert statements == ["INSERT"]
    [row] = _rows(db)
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.request_id, row.replica) == ("ok", 7, 3, "a", "r1")
    assert writer._journaled == set()


def test_an_end_after_its_start_was_written_updates_the_row(db: Engine, writer: UsageWriter,
                                                            statements: list[str]) -> None:
    start = _start("b")
    writer._write([start, _end(None, "rejected", 0, 0)])  # a refusal in the same batch: its own row
    [running, refused] = _rows(db)
    assert (running.status, running.request_id, running.prompt_tokens) == ("running", "b", 0)
    assert refused.status == "rejected" and refused.request_id is None
    assert statements == ["INSERT"] and writer._journaled == {"b"}
    end = _end("b", "cancelled", 4, 1)
    writer._write([end])
    assert statements == ["INSERT", "UPDATE"]  # no second row
    [row, _] = _rows(db)
    assert (row.id, row.status, row.prompt_tokens, row.completion_tokens, row.queue_ms, row.generation_ms) == \
        (running.id, "cancelled", 4, 1, 5, 50)
    assert abs((row.at.replace(tzinfo=None) - end.at.replace(tzinfo=None)).total_seconds()) < 0.01  # the end's time
    assert writer._journaled == set()


def test_an_end_without_a_start_row_is_inserted(db: Engine, writer: UsageWriter, statements: list[str]) -> None:
    writer._write([_end("never-started")])  # its start was never written by this writer
    writer._write([_start("gone")])
    with db.begin() as conn:  # the running row vanished (an admin deleted it, say)
        conn.execute(UsageRecord.__table__.delete().where(UsageRecord.request_id == "gone"))
    writer._write([_end("gone", "error", 2, 0)])
    assert statements == ["INSERT", "INSERT", "INSERT"]  # its row is gone: inserted again, no UPDATE sent
    assert [(r.request_id, r.status) for r in _rows(db)] == [("never-started", "ok"), ("gone", "error")]


def test_several_ends_in_one_batch_mix_updates_and_inserts(db: Engine, writer: UsageWriter,
                                                           statements: list[str]) -> None:
    writer._write([_start("x"), _start("y")])
    assert statements == ["INSERT"]  # both starts in one statement
    writer._write([_end("x"), _start("z"), _end("y", "error", 1, 0), _end("z"), _end(None)])
    assert statements == ["INSERT", "UPDATE", "INSERT"]  # x and y updated together; z and the plain one inserted
    assert sorted((r.request_id or "-", r.status) for r in _rows(db)) == [
        ("-", "ok"), ("x", "ok"), ("y", "error"), ("z", "ok")]


def test_the_sweep_interrupts_stale_and_own_running_rows(db: Engine, writer: UsageWriter, tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, request_timeout=30)
    now = utcnow()
    old = now - timedelta(seconds=30 + 61)
    writer._write([_start("old", "r2", at=old), _start("young", "r2", at=now - timedelta(seconds=30)),
                   _start("mine", "r1", at=now - timedelta(seconds=5)), _end("done"),
                   _start("after-boot", "r1", at=now + timedelta(seconds=5))])
    assert interrupt_stale(db, stale_before(settings, now)) == 1
    assert interrupt_own(db, "r1", now) == 1  # restarted at `now`: its older running rows are cut off
    status = {r.request_id: r.status for r in _rows(db)}
    assert status == {"old": "interrupted", "young": "running", "mine": "interrupted", "done": "ok",
                      "after-boot": "running"}
    mine = next(r for r in _rows(db) if r.request_id == "mine")
    assert (mine.prompt_tokens, mine.completion_tokens, mine.model) == (0, 0, MODEL)  # what was known
    writer._write([_end("young", "ok", 9, 9)])  # a replica that only lost the database for a while still ends
    assert {r.request_id: r.status for r in _rows(db)}["young"] == "ok"
    assert interrupt_stale(db, stale_before(settings, now)) == 0  # nothing left: a second sweep changes nothing


def test_reports_count_ended_and_interrupted_requests_once(db: Engine, writer: UsageWriter) -> None:
    writer._write([_start("r"), _start("i"), _end("o", "ok", 10, 5)])
    interrupt_own(db, "r1", utcnow())
    writer._write([_start("r2")])  # still running: counted once it ends, as before the journal
    with session_factory(db)() as s:
        [total] = usage_summary(s, "model")
    assert (total["requests"], total["ok"], total["errors"], total["cancelled"], total["rejected"]) == (3, 1, 2, 0, 0)
    assert (total["prompt_tokens"], total["completion_tokens"]) == (10, 5)
    assert (total["mean_queue_ms"], total["mean_generation_ms"]) == (5, 50)  # only the ended request has times


# --- through the gate ------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="function")
async def access(tmp_path: Path) -> AsyncIterator[AccessService]:
    service = AccessService.open(load_settings(home=tmp_path, auth="on", energy_replica="replica-a"))
    await service.start()
    yield service
    await service.close()


async def test_a_stream_is_on_record_while_it_runs(access: AccessService, tmp_path: Path) -> None:
    helper = ServerDB(tmp_path)
    try:
        uid = helper.add_user("ada", role="student")
        principal = access.authn.authenticate(Credential("key", helper.add_key(uid, name="k")[1]))
        assert principal is not None
        caller = Caller(principal=principal, locale="en", identity=f"user:{uid}", endpoint="/api/chat",
                        request_id="req-1")
        gate = access.gate
        admission = await gate.reserve(await gate.admit(caller, MODEL, prompt_bound=20), 10, 8)
        release = asyncio.Event()

        async def events() -> AsyncIterator[Any]:
            yield TextChunk("hi", 1)
            await release.wait()
            yield GenerationStats(finish_reason="stop", prompt_tokens=7, completion_tokens=2, prompt_eval_ns=1,
                                  eval_ns=1)

        stream = gate.meter(admission, GenerationRequest(model=MODEL, prompt="hello", max_tokens=8), events())
        assert isinstance(await anext(stream), TextChunk)
        await access.usage.flush()
        [running] = helper.usage(helper.pseudonym("ada"))
        assert (running.status, running.replica, running.key_id) == ("running", "replica-a", principal.key_id)
        assert "req-1" not in running.request_id and len(running.request_id) == 32  # random, never the client's id
        release.set()
        assert [ev async for ev in stream]
        await access.usage.flush()
        [ended] = helper.usage(helper.pseudonym("ada"))
        assert (ended.id, ended.request_id, ended.status, ended.prompt_tokens, ended.completion_tokens) == \
            (running.id, running.request_id, "ok", 7, 2)
    finally:
        helper.close()


class _Leases:
    """Redis leases whose release is cancelled again, as anyio re-cancels a request task at every await
    once its client has left."""

    async def acquire(self, holder: str, model: str, limit: int) -> Lease:
        return Lease("k", "m")

    async def release(self, lease: Lease) -> None:
        raise asyncio.CancelledError


async def test_a_stream_cancelled_again_while_giving_its_lease_back_is_still_recorded(
        access: AccessService, tmp_path: Path) -> None:
    helper = ServerDB(tmp_path)
    try:
        uid = helper.add_user("bo", role="student")
        principal = access.authn.authenticate(Credential("key", helper.add_key(uid, name="k")[1]))
        assert principal is not None
        caller = Caller(principal=principal, locale="en", identity=f"user:{uid}", endpoint="/api/chat")
        access.gate.leases = _Leases()  # type: ignore[assignment]
        admission = await access.gate.reserve(await access.gate.admit(caller, MODEL, prompt_bound=20), 10, 8)

        async def events() -> AsyncIterator[Any]:
            yield TextChunk("hi", 1)
            yield TextChunk("hi", 2)

        stream = access.gate.meter(admission, GenerationRequest(model=MODEL, prompt="hello", max_tokens=8, max_concurrent=2),
                                   events())
        assert isinstance(await anext(stream), TextChunk)
        with pytest.raises(asyncio.CancelledError):
            await stream.athrow(asyncio.CancelledError())  # the client left
        await access.usage.flush()
        [record] = helper.usage(helper.pseudonym("bo"))
        assert (record.status, record.completion_tokens) == ("cancelled", 1)
        assert len(record.request_id) == 32  # no request id from the client: a random one
    finally:
        helper.close()
