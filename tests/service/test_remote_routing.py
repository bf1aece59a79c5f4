"""Which remote engine runs a request: a second backend takes over only while nothing has been
streamed yet, and a backend's max_concurrency holds the rest of the requests in Flexi."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from flexi.config import BackendConfig
from flexi.engine.remote.wire import BackendFailed, BackendsDown
from flexi.engine.types import EmbeddingRequest, EngineError, TextChunk, TooManyRequests
from flexi.scheduler.fair_queue import FairQueue
from flexi.service.backend_health import BackendHealth
from flexi.service.remote import RemoteEngine, RemoteModel, _record
from flexi.store.names import parse_model_name
from tests.engine.test_remote_wire import CHAT, Body, client, collect, ndjson


def _model(*handlers: Callable[[httpx.Request], httpx.Response]) -> tuple[RemoteModel, list[int]]:
    calls = [0] * len(handlers)
    pairs = []
    for i, handler in enumerate(handlers):
        def counted(request: httpx.Request, i: int = i, handler: Callable[..., httpx.Response] = handler) -> httpx.Response:
            calls[i] += 1
            return handler(request)

        engine = RemoteEngine(BackendConfig(name=f"e{i}", url="http://engine", kind="flexi", models=["m"]))
        engine.client = client(counted)
        pairs.append((engine, "m"))
    name = parse_model_name("m").canonical()
    return RemoteModel(_record(name, [p[0].config for p in pairs], 4096, datetime.now(UTC)),
                       pairs, 4096), calls


GOOD = ndjson({"message": {"content": "Hi"}, "done": False}, {"done": True, "prompt_eval_count": 3, "eval_count": 1})


def test_retry_on_the_next_backend_before_the_first_token() -> None:
    model, calls = _model(lambda r: httpx.Response(500, text="boom"), lambda r: httpx.Response(200, stream=Body(GOOD)))
    events = asyncio.run(collect(model.generate(CHAT)))
    assert [e.text for e in events if isinstance(e, TextChunk)] == ["Hi"] and calls == [1, 1]


def test_never_a_retry_after_the_first_token() -> None:
    broken = ndjson({"message": {"content": "Hi"}, "done": False}) + [httpx.ReadError("killed")]
    model, calls = _model(lambda r: httpx.Response(200, stream=Body(broken)), lambda r: httpx.Response(200, stream=Body(GOOD)))
    with pytest.raises(BackendFailed, match="closed the stream"):
        asyncio.run(collect(model.generate(CHAT)))
    assert calls == [1, 0]


def test_a_refused_request_is_not_retried() -> None:
    model, calls = _model(lambda r: httpx.Response(400, json={"error": "bad"}), lambda r: httpx.Response(200, stream=Body(GOOD)))
    with pytest.raises(EngineError, match="refused the request: bad"):
        asyncio.run(collect(model.generate(CHAT)))
    assert calls == [1, 0]


def test_max_concurrency_holds_the_rest_in_flexi() -> None:
    async def run() -> int:
        peak, now = 0, 0
        gate = asyncio.Event()

        async def slow(request: httpx.Request) -> httpx.Response:
            nonlocal peak, now
            now += 1
            peak = max(peak, now)
            await gate.wait()
            now -= 1
            return httpx.Response(200, stream=Body(GOOD))

        engine = RemoteEngine(BackendConfig(name="e", url="http://engine", kind="flexi", models=["m"], max_concurrency=2))
        engine.client = httpx.AsyncClient(transport=httpx.MockTransport(slow), base_url="http://engine")
        tasks = [asyncio.create_task(collect(engine.generate("m", CHAT))) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert engine.in_flight == 5
        gate.set()
        await asyncio.gather(*tasks)
        return peak

    assert asyncio.run(run()) == 2


def test_a_name_flexi_cannot_use_is_a_startup_error() -> None:
    from flexi.service.remote import served_models

    bad = BackendConfig(name="b", url="http://b", kind="openai", models={"bad name!": "x"})
    with pytest.raises(ValueError, match="backend 'b': 'bad name!' is not a valid model name"):
        served_models([bad])
    off = BackendConfig(name="off", url="http://b", kind="openai", models={"m": "x"}, enabled=False)
    on = BackendConfig(name="on", url="http://c", kind="flexi", models={"M:latest": "y"})
    assert [(c.name, theirs) for c, theirs in served_models([off, on])[parse_model_name("m").canonical()]] == [("on", "y")]


def test_a_person_at_their_cap_gets_429_from_the_remote_queue() -> None:
    async def run() -> None:
        hold = asyncio.Event()

        async def slow(request: httpx.Request) -> httpx.Response:
            await hold.wait()
            return httpx.Response(200, stream=Body(GOOD))

        engine = RemoteEngine(BackendConfig(name="e", url="http://engine", kind="flexi", models=["m"], max_concurrency=4))
        engine.client = httpx.AsyncClient(transport=httpx.MockTransport(slow), base_url="http://engine")
        capped = dataclasses.replace(CHAT, user="user:1", max_concurrent=2)
        first = [asyncio.create_task(collect(engine.generate("m", capped))) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(TooManyRequests):
            await collect(engine.generate("m", capped))
        other = asyncio.create_task(collect(engine.generate("m", dataclasses.replace(capped, user="user:2"))))
        await asyncio.sleep(0.05)
        hold.set()
        await asyncio.gather(*first, other)

    asyncio.run(run())


def test_the_least_loaded_backend_takes_the_next_request() -> None:
    async def run() -> list[int]:
        hold = asyncio.Event()

        async def slow(request: httpx.Request) -> httpx.Response:
            await hold.wait()
            return httpx.Response(200, stream=Body(GOOD))

        model, calls = _model(lambda r: httpx.Response(200, stream=Body(GOOD)), lambda r: httpx.Response(200, stream=Body(GOOD)))
        first, second = (engine for engine, _ in model.served_by)
        first.client = httpx.AsyncClient(transport=httpx.MockTransport(slow), base_url="http://engine")
        busy = asyncio.create_task(collect(model.generate(CHAT)))  # ties go to the first in the configuration
        await asyncio.sleep(0.05)
        assert (first.in_flight, second.in_flight) == (1, 0)
        await collect(model.generate(CHAT))  # the first is busy: the second one answers
        hold.set()
        await busy
        return calls

    assert asyncio.run(run()) == [0, 1]  # the first engine's original handler was replaced by `slow`


def _breakers(model: RemoteModel, threshold: int = 3, cooldown: float = 30.0) -> list[float]:
    """Give each engine a breaker on a shared fake clock; returns the clock (a one-element list)."""
    now = [0.0]
    for engine, _ in model.served_by:
        engine.health = BackendHealth(threshold, cooldown, clock=lambda: now[0])
    return now


def test_an_open_circuit_gets_no_requests_and_the_other_backend_answers() -> None:
    model, calls = _model(lambda r: httpx.Response(500, text="boom"), lambda r: httpx.Response(200, stream=Body(GOOD)))
    _breakers(model)
    for _ in range(3):  # each fails over to e1 before the first token
        assert [e.text for e in asyncio.run(collect(model.generate(CHAT))) if isinstance(e, TextChunk)] == ["Hi"]
    first = model.served_by[0][0]
    assert first.health.circuit == "open" and first.health.failures == {"http_5xx": 3} and calls == [3, 3]
    for _ in range(5):
        asyncio.run(collect(model.generate(CHAT)))
    assert calls == [3, 8]  # not one more attempt at the dead backend


def test_every_backend_open_is_503_at_once_with_the_shortest_cooldown() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    model, calls = _model(lambda r: httpx.Response(502, text="bad gateway"), refused)
    now = _breakers(model, threshold=1, cooldown=30)
    with pytest.raises(BackendFailed):  # both tried and failed: the last failure, as before
        asyncio.run(collect(model.generate(CHAT)))
    now[0] = 12.2  # e0 opened at 0, e1 too: 17.8 s left
    model.served_by[1][0].health._opened_at = 5.0  # e1 opened later: 22.8 s left
    with pytest.raises(BackendsDown) as exc:
        asyncio.run(collect(model.generate(CHAT)))
    assert (exc.value.status, exc.value.retry_after, exc.value.code) == (503, 18, "backend_unavailable")
    assert "every backend serving m:latest is unavailable" in exc.value.message
    with pytest.raises(BackendsDown):
        asyncio.run(model.embed(EmbeddingRequest(model="m", inputs=["x"])))
    assert calls == [1, 1]


def test_half_open_sends_one_trial_and_its_success_closes_the_circuit() -> None:
    async def run() -> None:
        gate = asyncio.Event()
        hits = 0

        async def engine(request: httpx.Request) -> httpx.Response:
            nonlocal hits
            hits += 1
            await gate.wait()
            return httpx.Response(200, stream=Body(GOOD))

        model, _ = _model(lambda r: httpx.Response(200, stream=Body(GOOD)))
        now = _breakers(model, threshold=1, cooldown=10)
        only = model.served_by[0][0]
        only.client = httpx.AsyncClient(transport=httpx.MockTransport(engine), base_url="http://engine")
        only.health.failed("connect", "refused")
        now[0] = 10.0  # half-open
        trial = asyncio.create_task(collect(model.generate(CHAT)))
        await asyncio.sleep(0.05)
        with pytest.raises(BackendsDown) as exc:  # the trial is under way: nobody else gets in
            await collect(model.generate(CHAT))
        assert exc.value.retry_after == 1
        gate.set()
        await trial
        assert only.health.circuit == "closed" and hits == 1
        await collect(model.generate(CHAT))
        assert hits == 2

    asyncio.run(run())


def test_a_refused_request_is_no_verdict_on_the_backend() -> None:
    model, calls = _model(lambda r: httpx.Response(400, json={"error": "bad"}))
    _breakers(model, threshold=1)
    for _ in range(3):
        with pytest.raises(EngineError, match="refused the request"):
            asyncio.run(collect(model.generate(CHAT)))
    health = model.served_by[0][0].health
    assert health.circuit == "closed" and health.failures == {} and calls == [3]


def test_a_request_that_waited_while_the_circuit_opened_is_not_sent_there() -> None:
    async def run() -> tuple[list[int], int]:
        hold = asyncio.Event()
        hits = 0

        async def dying(request: httpx.Request) -> httpx.Response:
            nonlocal hits
            hits += 1
            await hold.wait()
            return httpx.Response(500, text="CUDA error")

        model, calls = _model(lambda r: httpx.Response(200, stream=Body(GOOD)), lambda r: httpx.Response(200, stream=Body(GOOD)))
        _breakers(model)
        first, second = (engine for engine, _ in model.served_by)
        first.queue = FairQueue(1, 8)
        first.client = httpx.AsyncClient(transport=httpx.MockTransport(dying), base_url="http://engine")
        second.health.engine_waiting = 10  # the other engine reports a long queue of its own: e0 goes first
        running = asyncio.create_task(collect(model.generate(CHAT)))
        await asyncio.sleep(0.02)
        waiting = asyncio.create_task(collect(model.generate(CHAT)))  # e0: 1 in flight < e1: 10 in its queue
        await asyncio.sleep(0.02)
        assert first.queue.waiting == 1
        for _ in range(3):  # the engine died meanwhile: three failing probes open its circuit
            first.health.probed(False, "health probe: HTTP 503")
        hold.set()
        for task in (running, waiting):  # the running one fails over before its first token; the waiting
            events = await task          # one's turn came with the circuit open: it went to e1 directly
            assert [e.text for e in events if isinstance(e, TextChunk)] == ["Hi"]
        assert first.health.failures == {"probe": 3, "http_5xx": 1}
        return calls, hits

    assert asyncio.run(run()) == ([0, 2], 1)
