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
from flexi.engine.remote.wire import BackendFailed
from flexi.engine.types import EngineError, TextChunk, TooManyRequests
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
