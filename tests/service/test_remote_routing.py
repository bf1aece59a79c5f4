"""Which remote engine runs a request: a second backend takes over only while nothing has been
streamed yet, and a backend's max_concurrency holds the rest of the requests in Flexi."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from flexi.config import BackendConfig
from flexi.engine.remote.wire import BackendFailed
from flexi.engine.types import EngineError, TextChunk
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
