"""Models of remote backends in the generation service, with the real access layer: listed and resolved
like stored models, judged by the same policies, role caps and usage records; the engine gets the chat's
messages (it applies the template itself); local models stay on the local backend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from flexi.access.caller import Caller
from flexi.access.service import AccessService
from flexi.config import load_settings
from flexi.engine.types import BadRequest, ModelNotFound, TextChunk
from flexi.service.generation import ChatPrompt, Draft, GenerationService, TextPrompt
from flexi.service.options import ModelOptions
from flexi.service.remote import RemoteBackends
from tests.access_helpers import ServerDB
from tests.engine.test_remote_wire import Body, ndjson
from tests.service.test_generation_service import FakeBackend, _caller, _record

BACKENDS = [{"name": "gpu1", "url": "http://gpu1:11434", "kind": "ollama",
             "models": {"campus-llama": "llama3.1:8b"}, "api_key": "sk-hidden"}]


class World:
    def __init__(self, service: GenerationService, local: FakeBackend, access: AccessService, db: ServerDB,
                 sent: list[dict[str, Any]]) -> None:
        self.service, self.local, self.access, self.db, self.sent = service, local, access, db, sent


@pytest_asyncio.fixture(loop_scope="function")
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = load_settings(home=tmp_path, auth="on", role_max_output={"student": 7}, backends=BACKENDS)
    access = AccessService.open(settings)
    await access.start()
    db = ServerDB(tmp_path)
    sent: list[dict[str, Any]] = []

    def engine(request: httpx.Request) -> httpx.Response:
        sent.append({"path": request.url.path, "auth": request.headers.get("authorization"),
                     **json.loads(request.content)})
        return httpx.Response(200, stream=Body(ndjson(
            {"message": {"content": "Hallo"}, "done": False},
            {"done": True, "done_reason": "stop", "prompt_eval_count": 21, "eval_count": 1})))

    remote = RemoteBackends(settings)
    remote.engines[0].client = httpx.AsyncClient(transport=httpx.MockTransport(engine), base_url="http://gpu1:11434",
                                                 headers=remote.engines[0].client.headers)
    local = FakeBackend()
    store = type("Store", (), {"get": staticmethod(lambda name: _record(name))})()
    service = GenerationService(settings, store, access.gate, remote.selector(local), remote)  # type: ignore[arg-type]
    yield World(service, local, access, db, sent)
    await remote.close()
    await access.close()
    db.close()


async def _chat(w: World, caller: Caller, name: str, draft: Draft) -> list[Any]:
    record = w.service.model(caller, name)
    return [ev async for ev in await w.service.generate(caller, record, draft)]


async def test_remote_model_gets_the_messages_and_is_billed_with_the_engines_counts(world: World) -> None:
    caller = _caller(world.access, world.db, "anna")
    draft = Draft(ChatPrompt([{"role": "user", "content": "Hi", "images": None}]), options=ModelOptions(num_predict=50),
                  body=None)
    events = await _chat(world, caller, "campus-llama", draft)
    assert [e.text for e in events if isinstance(e, TextChunk)] == ["Hallo"]
    [sent] = world.sent
    assert sent["path"] == "/api/chat" and sent["model"] == "llama3.1:8b"
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]  # not a rendered prompt
    assert sent["options"]["num_predict"] == 7  # the student's role cap, decided by the service
    assert sent["auth"] == "Bearer sk-hidden"
    await world.access.usage.flush()
    [usage] = world.db.usage(world.db.pseudonym("anna"))
    assert (usage.model, usage.prompt_tokens, usage.completion_tokens) == ("campus-llama:latest", 21, 1)
    assert world.local.requests == []


async def test_policies_apply_to_remote_models(world: World) -> None:
    student = _caller(world.access, world.db, "ben")
    world.db.add_policy("campus-llama", allowed_roles=["teacher"])
    with pytest.raises(ModelNotFound):
        world.service.model(student, "campus-llama")
    shown = await world.service.listing(student, [_record("tiny:latest")])
    assert [name for name, _ in shown] == ["tiny:latest"]
    teacher = _caller(world.access, world.db, "tina", role="teacher")
    shown = await world.service.listing(teacher, [_record("tiny:latest")])
    assert [name for name, _ in shown] == ["tiny:latest", "campus-llama:latest"]


async def test_local_models_stay_local_and_text_prompts_become_chats(world: World) -> None:
    caller = _caller(world.access, world.db, "carl")
    await _chat(world, caller, "tiny", Draft(ChatPrompt([{"role": "user", "content": "Hi"}])))
    [(req, _)] = world.local.requests
    assert req.messages is None and req.prompt.startswith("<user>Hi")  # rendered here, as before
    await _chat(world, caller, "campus-llama", Draft(TextPrompt("Why?", system="Be brief.")))
    assert world.sent[-1]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]
    await _chat(world, caller, "campus-llama", Draft(TextPrompt("Once upon", raw=True)))
    assert world.sent[-1]["path"] == "/api/generate" and world.sent[-1]["prompt"] == "Once upon"


async def test_what_a_remote_engine_cannot_take_is_refused_before_it_runs(world: World) -> None:
    caller = _caller(world.access, world.db, "dora")
    with pytest.raises(BadRequest, match="invalid format 'yaml'"):
        await _chat(world, caller, "campus-llama", Draft(ChatPrompt([{"role": "user", "content": "Hi"}]), fmt="yaml"))
    with pytest.raises(BadRequest, match="does not support tools"):
        await _chat(world, caller, "campus-llama", Draft(ChatPrompt([{"role": "user", "content": "Hi"}],
                                                                    tools=[{"type": "function"}])))
    assert world.sent == []


async def test_an_output_limited_only_by_the_context_is_left_to_the_engine(world: World) -> None:
    """vLLM refuses prompt + max_tokens beyond its context: a limit nobody asked for is not sent."""
    admin = _caller(world.access, world.db, "root", role="admin")
    chat = ChatPrompt([{"role": "user", "content": "Hi"}])
    await _chat(world, admin, "campus-llama", Draft(chat))
    assert "num_predict" not in world.sent[-1]["options"]
    await _chat(world, admin, "campus-llama", Draft(chat, options=ModelOptions(num_predict=5)))
    assert world.sent[-1]["options"]["num_predict"] == 5


async def test_output_formats_go_to_the_engine_as_asked(world: World) -> None:
    caller = _caller(world.access, world.db, "eva")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    await _chat(world, caller, "campus-llama", Draft(ChatPrompt([{"role": "user", "content": "Hi"}]), fmt=schema))
    assert world.sent[-1]["format"] == schema
