"""`RemoteBackends.reload`: backends change while requests run (admins add and remove them at run time).

Unchanged backends keep their engine (connections, queue) and their models keep their record, so a request
resolved before the reload still runs; a removed backend finishes its streams and closes afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from flexi.config import BackendConfig, Settings
from flexi.engine.types import ModelNotFound, TextChunk
from flexi.service.remote import RemoteBackends
from flexi.store.names import parse_model_name
from tests.engine.test_remote_wire import CHAT, client, ndjson


def _backend(name: str, *models: str, url: str = "http://engine") -> BackendConfig:
    return BackendConfig(name=name, url=url, kind="flexi", models=list(models))


def _remote(*configs: BackendConfig) -> RemoteBackends:
    return RemoteBackends(Settings(backends=list(configs)))


def _key(name: str) -> object:
    return parse_model_name(name).canonical()


class Held(httpx.AsyncByteStream):
    """An answer whose last line waits until the test releases it."""

    def __init__(self, release: asyncio.Event) -> None:
        self.release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield ndjson({"message": {"content": "Hi"}, "done": False})[0]
        await self.release.wait()
        yield ndjson({"done": True, "prompt_eval_count": 2, "eval_count": 1})[0]


async def test_unchanged_backends_keep_engines_and_records() -> None:
    remote = _remote(_backend("a", "model-a"), _backend("b", "model-b"))
    engine_a, engine_b = remote.engines
    record_a = remote.record("model-a")
    remote.reload([_backend("a", "model-a"), _backend("c", "model-c")])
    assert remote.engines[0] is engine_a and remote.record("model-a") is record_a
    assert [e.name for e in remote.engines] == ["a", "c"]
    assert remote.record("model-b") is None and remote.record("model-c") is not None
    await asyncio.sleep(0.05)
    assert engine_b.client.is_closed and not engine_a.client.is_closed  # b was idle: closed at once
    await remote.close()
    assert all(e.client.is_closed for e in remote.engines)


async def test_a_changed_backend_gets_a_new_engine() -> None:
    remote = _remote(_backend("a", "model-a"))
    (old,) = remote.engines
    record = remote.record("model-a")
    remote.reload([_backend("a", "model-a", url="http://elsewhere")])
    (new,) = remote.engines
    assert new is not old and new.config.url == "http://elsewhere" and remote.record("model-a") is not record
    await asyncio.sleep(0.05)
    assert old.client.is_closed
    await remote.close()


async def test_a_removed_backend_finishes_its_stream_then_closes() -> None:
    remote = _remote(_backend("a", "model-a"))
    release = asyncio.Event()
    (engine,) = remote.engines
    engine.client = client(lambda request: httpx.Response(200, stream=Held(release)))
    model = remote.models[_key("model-a")]
    events = model.generate(CHAT)
    first = await events.__anext__()
    assert isinstance(first, TextChunk) and first.text == "Hi"
    remote.reload([])
    assert remote.models == {} and remote.engines == []
    await asyncio.sleep(0.5)
    assert not engine.client.is_closed  # the request still runs
    release.set()
    rest = [ev async for ev in events]
    assert rest and rest[-1].completion_tokens == 1
    for _ in range(20):
        if engine.client.is_closed:
            break
        await asyncio.sleep(0.1)
    assert engine.client.is_closed
    await remote.close()


async def test_a_request_resolved_before_a_backend_changed_goes_to_the_backend_as_it_is_now() -> None:
    """The record was looked up, then an admin changed the backend (a new engine, a new record): the request
    is served by the model as it is now, not refused as unknown."""
    remote = _remote(_backend("a", "model-a"))
    select = remote.selector(object())  # type: ignore[arg-type]
    record = remote.record("model-a")
    assert record is not None
    remote.reload([_backend("a", "model-a", url="http://elsewhere"), _backend("b", "model-a")])
    assert remote.record("model-a") is not record
    assert select(record) is remote.models[_key("model-a")]
    await remote.close()


async def test_a_request_that_picked_a_backend_just_before_it_was_removed_fails_over() -> None:
    """Picked, then the backend was removed and its idle client closed before the request entered its queue:
    the request goes to the next backend instead of failing on a closed client."""
    remote = _remote(_backend("a", "model-a"), _backend("b", "model-a"))
    model = remote.models[_key("model-a")]
    first, second = (engine for engine, _ in model.served_by)
    second.client = client(lambda request: httpx.Response(200, content=b"".join(ndjson(
        {"message": {"content": "Hi"}, "done": False}, {"done": True, "prompt_eval_count": 2, "eval_count": 1}))))
    await first.client.aclose()  # what _close_when_idle does to a removed backend with nothing in flight
    events = [ev async for ev in model.generate(CHAT)]
    assert [ev.text for ev in events if isinstance(ev, TextChunk)] == ["Hi"]
    assert first.health.failures == {}  # a removed backend is no failing one
    await remote.close()


async def test_a_request_for_a_removed_model_is_not_found() -> None:
    remote = _remote(_backend("a", "model-a"))
    local = object()
    select = remote.selector(local)  # type: ignore[arg-type]
    record = remote.record("model-a")
    assert record is not None and select(record) is remote.models[_key("model-a")]
    remote.reload([])
    with pytest.raises(ModelNotFound):
        select(record)
    await remote.close()


async def test_an_unusable_model_name_changes_nothing() -> None:
    remote = _remote(_backend("a", "model-a"))
    engines, models = list(remote.engines), dict(remote.models)
    with pytest.raises(ValueError, match="not a valid model name"):
        remote.reload([_backend("a", "model-a"), BackendConfig(name="b", url="http://e", kind="flexi",
                                                              models={"Bad Name!": "x"})])
    assert remote.engines == engines and remote.models == models
    await remote.close()


async def test_disabled_and_external_backends_serve_nothing_until_enabled() -> None:
    remote = _remote()
    remote.reload([BackendConfig(name="off", url="http://e", kind="openai", models=["m-off"], enabled=False)])
    assert remote.records() == [] and remote.engines == []
    cloud = BackendConfig(name="cloud", url="https://eu.example", kind="openai", models=["m-cloud"], external=True,
                          enabled=True)
    remote.reload([cloud])
    record = remote.record("m-cloud")
    assert record is not None and record.external
    await remote.close()
