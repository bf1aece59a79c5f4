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
from flexi.prompt.rendering import check_capabilities
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
    with pytest.raises(BadRequest, match="does not support thinking"):  # not in the default capabilities
        await _chat(world, caller, "campus-llama", Draft(ChatPrompt([{"role": "user", "content": "Hi"}], think=True)))
    with pytest.raises(BadRequest, match="does not support images"):
        await _chat(world, caller, "campus-llama", Draft(ChatPrompt([{"role": "user", "content": "Hi", "images": ["aGk="]}],
                                                                    has_images=True)))
    assert world.sent == []


async def test_a_model_can_what_all_its_backends_declare(tmp_path: Path) -> None:
    """Any of a model's backends may get a request: a capability one of them lacks is refused with 400."""
    both = [{"name": "a", "url": "http://a:11434", "kind": "ollama", "models": ["shared"],
             "capabilities": ["completion", "tools", "vision", "thinking"]},
            {"name": "b", "url": "http://b:8000/v1", "kind": "vllm", "models": ["shared"], "capabilities": ["completion"]},
            {"name": "c", "url": "http://c:8000/v1", "kind": "vllm", "models": ["seeing"],
             "capabilities": ["completion", "vision", "thinking"]}]
    remote = RemoteBackends(load_settings(home=tmp_path, backends=both))
    try:
        shared, seeing = remote.record("shared"), remote.record("seeing")
        assert shared is not None and seeing is not None
        assert (shared.info.capabilities, seeing.info.capabilities) == (["completion"], ["completion", "vision", "thinking"])
        with pytest.raises(BadRequest, match="does not support tools"):
            check_capabilities(shared, tools=[{"type": "function"}])
        with pytest.raises(BadRequest, match="does not support tools"):
            check_capabilities(seeing, tools=[{"type": "function"}])
        check_capabilities(seeing, think=True, images=["aGk="])  # declared: no refusal
    finally:
        await remote.close()


async def test_tools_and_their_results_go_to_the_engine_in_its_dialect(world: World) -> None:
    """A remote engine with tools (the default) gets the tools, the earlier call and its result as data;
    the capabilities a model shows are what its backends declare."""
    assert world.service.model(None, "campus-llama").info.capabilities == ["completion", "tools"]
    caller = _caller(world.access, world.db, "erik")
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    chat = [{"role": "user", "content": "Weather in Ulm?"},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "c1",
                                                                 "function": {"name": "weather", "arguments": {"city": "Ulm"}}}]},
            {"role": "tool", "content": "sunny", "name": "weather", "tool_call_id": "c1"}]
    await _chat(world, caller, "campus-llama", Draft(ChatPrompt(chat, tools=[tool])))
    [sent] = world.sent
    assert sent["tools"] == [tool] and "think" not in sent
    assert sent["messages"] == [{"role": "user", "content": "Weather in Ulm?"},
                                {"role": "assistant", "content": "",
                                 "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Ulm"}}}]},
                                {"role": "tool", "content": "sunny", "tool_name": "weather"}]
    await _chat(world, caller, "campus-llama", Draft(ChatPrompt([{"role": "user", "content": "Hi"}], think=False)))
    assert "think" not in world.sent[-1] and "tools" not in world.sent[-1]  # not declared: an explicit false stays here


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


async def test_logprobs_need_a_local_model(world: World) -> None:
    caller = _caller(world.access, world.db, "emil")
    for draft in (Draft(ChatPrompt([{"role": "user", "content": "Hi"}]), logprobs=2),
                  Draft(TextPrompt("Once upon", raw=True), prompt_logprobs=True)):
        with pytest.raises(BadRequest, match='"campus-llama:latest" runs on a remote engine') as err:
            await _chat(world, caller, "campus-llama", draft)
        assert err.value.param == "logprobs"
    assert world.sent == []
    await _chat(world, caller, "tiny", Draft(TextPrompt("Once upon", raw=True), logprobs=1, prompt_logprobs=True))
    [(req, _)] = world.local.requests  # a local model gets both, as asked
    assert (req.logprobs, req.prompt_logprobs) == (1, True)
