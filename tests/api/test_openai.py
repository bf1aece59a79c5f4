"""The OpenAI router's translation both ways, without a model: a scripted fake manager and store.

Covers what the tiny default model cannot show end to end: tool-call output in the
shapes real tool models write, errors in the middle of a stream, and exactly which
internal request each OpenAI field turns into.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from flexi.access.service import AccessService
from flexi.api import openai as oa
from flexi.config import load_settings
from flexi.engine.types import (
    EmbeddingRequest,
    EmbeddingResult,
    EngineError,
    GenerationRequest,
    GenerationStats,
    ModelNotFound,
    TextChunk,
)
from flexi.http.access_middleware import AccessMiddleware
from flexi.http.errors import openai_error
from flexi.prompt.grammar import JSON_GBNF
from flexi.service.backends import local_only
from flexi.service.generation import GenerationService
from flexi.store.gguf_meta import GGUFInfo
from flexi.store.names import parse_model_name
from flexi.store.store import ModelRecord

TOOLS_TEMPLATE = (
    "{% if tools %}[TOOLS]{{ tools | tojson }}\n{% endif %}"
    "{% for m in messages %}<{{ m['role'] }}{% if m.name %} name={{ m.name }}{% endif %}>{{ m['content'] }}"
    "{% for c in m.tool_calls or [] %}[CALL {{ c.id }} {{ c.function.name }} city={{ c.function.arguments.city }}]{% endfor %}"
    "</{{ m['role'] }}>\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
OTHER_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
HI = [{"role": "user", "content": "hi"}]


def _record(name: str = "toolmodel:latest") -> ModelRecord:
    info = GGUFInfo(architecture="llama", chat_template=TOOLS_TEMPLATE, capabilities=["completion"])
    return ModelRecord(name=name, model_name=parse_model_name(name), digest="ab" * 32, size=1,
                       modified_at=datetime(2025, 1, 2, tzinfo=timezone.utc), model_path=Path("/nonexistent"), info=info)


class FakeStore:
    def __init__(self) -> None:
        self.records = {r.model_name.canonical().display: r for r in (_record(), _record("hf.co/someorg/repo:Q4_K_M"))}

    def get(self, name: str) -> ModelRecord:
        canonical = parse_model_name(name).canonical().display
        if canonical not in self.records:
            raise ModelNotFound(name)
        return self.records[canonical]

    def list(self) -> list[ModelRecord]:
        return list(self.records.values())


@dataclass
class FakeManager:
    """Replays `script` for every generation and records the requests it got."""

    script: list[Any] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    closed: int = 0

    async def generate(self, req: GenerationRequest, record: ModelRecord | None = None) -> AsyncIterator[TextChunk | GenerationStats]:
        self.requests.append(req)
        try:
            n = 0
            for item in self.script:
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, str):
                    n += 1
                    yield TextChunk(item, n)
                else:
                    yield item
        finally:
            self.closed += 1

    def context_for(self, record: ModelRecord, num_ctx: int | None) -> int:
        return num_ctx or 4096

    def context_ceiling(self, record: ModelRecord) -> int:
        return 4096

    async def embed(self, req: EmbeddingRequest, record: ModelRecord | None = None) -> EmbeddingResult:
        self.requests.append(req)
        return EmbeddingResult(embeddings=[[0.6, 0.0, 0.8, 0.0], [1.0, 0.0, 0.0, 0.0]][: len(req.inputs)],
                               prompt_tokens=3 * len(req.inputs), total_ns=1)


def _stats(reason: str = "stop", completion: int = 3) -> GenerationStats:
    return GenerationStats(finish_reason=reason, prompt_tokens=10, completion_tokens=completion, prompt_eval_ns=1,
                           eval_ns=1, cached_tokens=4)  # type: ignore[arg-type]


@pytest.fixture
def manager() -> FakeManager:
    return FakeManager(script=["Hel", "lo", _stats()])


@pytest.fixture
def access(tmp_path: Path) -> Iterator[AccessService]:
    """The real access layer (auth off, SQLite in a temporary home): the router goes through it."""
    service = AccessService.open(load_settings(home=tmp_path))
    yield service
    service.engine.dispose()


@pytest.fixture
def app(manager: FakeManager, access: AccessService) -> FastAPI:
    app = FastAPI()
    app.include_router(oa.router)
    app.add_middleware(AccessMiddleware)
    store = FakeStore()
    app.state.flexi = SimpleNamespace(store=store, manager=manager, access=access, settings=access.settings,
                                      generation=GenerationService(access.settings, store, access.gate,  # type: ignore[arg-type]
                                                                   local_only(manager)))

    @app.exception_handler(EngineError)
    async def _err(request: Request, exc: EngineError) -> Any:
        return openai_error(exc)

    return app


@pytest.fixture
def http(app: FastAPI) -> TestClient:
    return TestClient(app)


@pytest.fixture
def client(http: TestClient) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=http)


# --- tool calls -----------------------------------------------------------------------------
def test_hermes_tool_call_becomes_tool_calls(client: openai.OpenAI, manager: FakeManager) -> None:
    manager.script = ['<tool_call>{"name": "get_weather", ', '"arguments": {"city": "Paris"}}</tool_call>', _stats()]
    resp = client.chat.completions.create(model="toolmodel", messages=HI, tools=[TOOL])  # type: ignore[list-item]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and len(call.id) > 10
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert "[TOOLS]" in manager.requests[0].prompt


def test_tool_call_with_prose_keeps_content(client: openai.OpenAI, manager: FakeManager) -> None:
    manager.script = ['Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>',
                      '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>', _stats()]
    resp = client.chat.completions.create(model="toolmodel", messages=HI, tools=[TOOL, OTHER_TOOL])  # type: ignore[list-item]
    msg = resp.choices[0].message
    assert msg.content == "Let me check."
    assert [c.function.name for c in msg.tool_calls or []] == ["get_weather", "get_time"]
    assert len({c.id for c in msg.tool_calls or []}) == 2


def test_call_to_unoffered_tool_stays_content(client: openai.OpenAI, manager: FakeManager) -> None:
    text = '{"name": "rm_rf", "arguments": {}}'
    manager.script = [text, _stats()]
    resp = client.chat.completions.create(model="toolmodel", messages=HI, tools=[TOOL])  # type: ignore[list-item]
    assert resp.choices[0].message.content == text and resp.choices[0].message.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"


def test_streamed_tool_call_is_one_delta(client: openai.OpenAI, manager: FakeManager) -> None:
    manager.script = ['{"name": "get_weather",', ' "arguments": {"city": "Rome"}}', _stats()]
    chunks = list(client.chat.completions.create(model="toolmodel", messages=HI, tools=[TOOL], stream=True,  # type: ignore[list-item]
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].type == "function"
    assert calls[0].function.name == "get_weather" and json.loads(calls[0].function.arguments or "") == {"city": "Rome"}
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_tool_choice(client: openai.OpenAI, manager: FakeManager) -> None:
    client.chat.completions.create(model="toolmodel", messages=HI, tools=[TOOL, OTHER_TOOL], tool_choice="none")  # type: ignore[list-item]
    assert "[TOOLS]" not in manager.requests[-1].prompt
    client.chat.completions.create(model="toolmodel", messages=HI, tools=[TOOL, OTHER_TOOL],  # type: ignore[list-item]
                                   tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert "get_time" in manager.requests[-1].prompt and "get_weather" not in manager.requests[-1].prompt
    client.chat.completions.create(model="toolmodel", messages=HI, tools=[TOOL], tool_choice="required")  # type: ignore[list-item]
    assert "get_weather" in manager.requests[-1].prompt
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="toolmodel", messages=HI, tools=[TOOL], tool_choice="sometimes")  # type: ignore[list-item,arg-type]
    assert err.value.body["param"] == "tool_choice"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="toolmodel", messages=HI, tools=[{"type": "function"}])  # type: ignore[list-item]
    assert err.value.body["param"] == "tools.0"  # type: ignore[index]


# --- request translation ----------------------------------------------------------------------
def test_messages_translation(client: openai.OpenAI, manager: FakeManager) -> None:
    client.chat.completions.create(model="toolmodel", tools=[TOOL], messages=[  # type: ignore[list-item]
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather"}, {"type": "text", "text": "in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "21 C"},
    ])
    prompt = manager.requests[-1].prompt
    assert "<system>Be brief.</system>" in prompt
    assert "<user>Weather\nin Paris?</user>" in prompt
    assert "<assistant>[CALL call_abc get_weather city=Paris]</assistant>" in prompt  # arguments parsed to a dict
    assert "<tool name=get_weather>21 C</tool>" in prompt  # tool result named after its call
    assert prompt.endswith("<assistant>")


def test_sampling_fields_map_to_options(client: openai.OpenAI, manager: FakeManager) -> None:
    client.chat.completions.create(
        model="toolmodel", messages=HI, temperature=0.3, top_p=0.5, seed=7, stop=["a", "b", "c", "d", "e"],
        max_tokens=99, max_completion_tokens=12, presence_penalty=0.5, frequency_penalty=-0.5, user="u1",
        extra_body={"top_k": 5, "min_p": 0.1, "repeat_penalty": 1.3, "ignore_eos": True, "keep_alive": "1m"})
    req: GenerationRequest = manager.requests[-1]
    s = req.sampling
    assert (s.temperature, s.top_p, s.seed, s.top_k, s.min_p, s.repeat_penalty) == (0.3, 0.5, 7, 5, 0.1, 1.3)
    assert (s.presence_penalty, s.frequency_penalty) == (0.5, -0.5)
    assert req.stop == ["a", "b", "c", "d", "e"] and req.max_tokens == 12 and req.ignore_eos
    assert req.keep_alive == 60 and req.grammar is None

    client.chat.completions.create(model="toolmodel", messages=HI, stop="x", max_tokens=5)
    req = manager.requests[-1]
    assert req.stop == ["x"] and req.max_tokens == 5
    assert req.sampling.temperature == 0.8  # unset: the model's / Flexi's default


def test_response_format(client: openai.OpenAI, manager: FakeManager) -> None:
    client.chat.completions.create(model="toolmodel", messages=HI, response_format={"type": "json_object"})
    assert manager.requests[-1].grammar == JSON_GBNF
    client.chat.completions.create(model="toolmodel", messages=HI, response_format={"type": "text"})
    assert manager.requests[-1].grammar is None
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    client.chat.completions.create(model="toolmodel", messages=HI, response_format={
        "type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}})
    assert manager.requests[-1].grammar and manager.requests[-1].grammar != JSON_GBNF


@pytest.mark.parametrize("value", [{"type": "xml"}, "json", 3, {"type": "json_schema"},
                                   {"type": "json_schema", "json_schema": {"name": "x", "schema": []}},
                                   {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}])
def test_bad_response_format(http: TestClient, value: Any) -> None:
    r = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": HI, "response_format": value})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"


def test_validation_errors(http: TestClient) -> None:
    cases = [({"temperature": 2.5}, "temperature"), ({"top_p": 2}, "top_p"), ({"n": 3}, "n"), ({"n": 0}, "n"),
             ({"max_tokens": "many"}, "max_tokens"), ({"logprobs": "many"}, "logprobs"), ({"stop": 5}, "stop"),
             ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"), ({"top_logprobs": 2}, "top_logprobs"),
             ({"stream_options": {"include_usage": "maybe"}}, "stream_options.include_usage"),
             ({"messages": [{"content": "x"}]}, "messages.0.role"),
             ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages.0.content.0.type"),
             ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, "messages.0.content.0.text")]
    for extra, param in cases:
        r = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": HI, **extra})
        assert r.status_code == 400, (extra, r.text)
        assert r.json()["error"]["param"] == param, (extra, r.json())
        assert r.json()["error"]["type"] == "invalid_request_error"


# --- responses ------------------------------------------------------------------------------------
def test_non_stream_response(http: TestClient) -> None:
    body = http.post("/v1/chat/completions", json={"model": "ToolModel", "messages": HI}).json()
    assert body["model"] == "ToolModel"  # the name the client sent
    assert body["system_fingerprint"] == "fp_flexi_" + ("ab" * 6)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": None},
                                "logprobs": None, "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                             "prompt_tokens_details": {"cached_tokens": 4}}


@pytest.mark.parametrize(("internal", "wire"), [("stop", "stop"), ("length", "length"), ("cancelled", "stop")])
def test_finish_reasons(http: TestClient, manager: FakeManager, internal: str, wire: str) -> None:
    manager.script = ["x", _stats(internal)]
    body = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": HI}).json()
    assert body["choices"][0]["finish_reason"] == wire


def test_stream_framing(http: TestClient, manager: FakeManager) -> None:
    manager.script = ["Hel", "", "lo", _stats("length")]
    r = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": HI, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = r.text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    objs = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert [o["choices"][0]["delta"] for o in objs] == [{"role": "assistant", "content": ""}, {"content": "Hel"},
                                                        {"content": "lo"}, {}]
    assert [o["choices"][0]["finish_reason"] for o in objs] == [None, None, None, "length"]
    assert all("usage" not in o for o in objs)
    assert manager.closed == 1


def test_error_mid_stream(client: openai.OpenAI, http: TestClient, manager: FakeManager) -> None:
    manager.script = ["Hel", EngineError("the model runner stopped unexpectedly; please retry", 500, "runner_crashed")]
    r = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": HI, "stream": True})
    events = [e.removeprefix("data: ") for e in r.text.split("\n\n") if e]
    assert json.loads(events[-2]) == {"error": {"message": "the model runner stopped unexpectedly; please retry",
                                                "type": "server_error", "param": None, "code": "runner_crashed"}}
    assert events[-1] == "[DONE]"
    with pytest.raises(openai.APIError, match="runner stopped"):
        for _ in client.chat.completions.create(model="toolmodel", messages=HI, stream=True):  # type: ignore[arg-type]
            pass


def test_unexpected_failure_mid_stream_is_an_error_event(http: TestClient, manager: FakeManager,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A bug below the router (any exception that is not an EngineError) after the 200 went out: the client
    gets a generic error event and the stream's proper end, never a connection cut mid-body; the traceback
    goes to the log, never to the client."""
    manager.script = ["Hel", KeyError("internal detail")]
    with caplog.at_level("ERROR", logger="flexi.api"):
        r = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": HI, "stream": True})
    events = [e.removeprefix("data: ") for e in r.text.split("\n\n") if e]
    assert json.loads(events[-2])["error"] == {
        "message": "the answer broke off because of an internal error; please retry", "type": "server_error",
        "param": None, "code": "internal_error"}
    assert events[-1] == "[DONE]" and "internal detail" not in r.text
    assert any(rec.exc_info and "internal detail" in str(rec.exc_info[1]) for rec in caplog.records)


def test_error_before_output_is_http_status(http: TestClient, manager: FakeManager) -> None:
    manager.script = [EngineError("the prompt is too long", 400, "runner_error")]
    r = http.post("/v1/chat/completions", json={"model": "toolmodel", "messages": HI, "stream": True})
    assert r.status_code == 400 and r.json()["error"]["message"] == "the prompt is too long"


def test_unknown_model(http: TestClient) -> None:
    r = http.post("/v1/chat/completions", json={"model": "ghost", "messages": HI})
    assert r.status_code == 404
    assert r.json() == {"error": {"message": 'model "ghost" not found, try pulling it first',
                                  "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


# --- completions ------------------------------------------------------------------------------
def test_completion_raw_prompt_and_defaults(client: openai.OpenAI, manager: FakeManager) -> None:
    resp = client.completions.create(model="toolmodel", prompt="Once upon", echo=True)
    req = manager.requests[-1]
    assert req.prompt == "Once upon"  # sent raw, no template
    assert req.max_tokens == 16  # OpenAI's default for this endpoint
    assert resp.choices[0].text == "Once uponHello"
    client.completions.create(model="toolmodel", prompt=["Once upon"], max_tokens=40, stop="\n")
    assert manager.requests[-1].max_tokens == 40 and manager.requests[-1].stop == ["\n"]


@pytest.mark.parametrize(("prompt", "message"), [(["a"] * 65, "too many prompts: 65, at most 64"),
                                                 ([1, -2], "negative token id"), ([[1], []], "prompt[1] is an empty list"),
                                                 (["a", 1], "a list of strings, a list of token ids"),
                                                 ([], "must not be empty"), (None, "prompt is required"),
                                                 ({"a": 1}, "must be a string, a list of strings"),
                                                 (["ok", "\ud800"], "prompt[1] contains a lone surrogate"),
                                                 ("\udfff", "prompt[0] contains a lone surrogate"),
                                                 (["x" * 70_000, "y" * 70_000], "together larger than 131072")])
def test_completion_bad_prompts(http: TestClient, manager: FakeManager, prompt: Any, message: str) -> None:
    before = len(manager.requests)
    body: dict[str, Any] = {"model": "toolmodel"}
    if prompt is not None:
        body["prompt"] = prompt
    r = http.post("/v1/completions", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert message in r.json()["error"]["message"] and r.json()["error"]["param"] == "prompt"
    assert len(manager.requests) == before  # refused before any prompt of the list ran (or was billed)


def test_completion_refusals(http: TestClient) -> None:
    for extra, param in (({"logprobs": 6}, "logprobs"), ({"best_of": 3}, "best_of"), ({"n": 2}, "n"),
                         ({"suffix": "end"}, "suffix"), ({"max_tokens": 0}, "max_tokens"),
                         ({"echo": True, "logprobs": 1, "suffix": "end"}, "suffix")):
        r = http.post("/v1/completions", json={"model": "toolmodel", "prompt": "x", **extra})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, extra


# --- embeddings -------------------------------------------------------------------------------
def test_embeddings_encodings(http: TestClient, manager: FakeManager) -> None:
    body = http.post("/v1/embeddings", json={"model": "toolmodel", "input": ["a", "b"]}).json()
    assert body == {"object": "list", "model": "toolmodel", "usage": {"prompt_tokens": 6, "total_tokens": 6},
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.0, 0.8, 0.0]},
                             {"object": "embedding", "index": 1, "embedding": [1.0, 0.0, 0.0, 0.0]}]}
    req = manager.requests[-1]
    assert req.normalize is True and req.inputs == ["a", "b"]
    body = http.post("/v1/embeddings", json={"model": "toolmodel", "input": "a", "encoding_format": "base64"}).json()
    assert base64.b64decode(body["data"][0]["embedding"]) == struct.pack("<4f", 0.6, 0.0, 0.8, 0.0)
    body = http.post("/v1/embeddings", json={"model": "toolmodel", "input": "a", "dimensions": 2}).json()
    assert body["data"][0]["embedding"] == [1.0, 0.0]  # truncated, then renormalised
    body = http.post("/v1/embeddings", json={"model": "toolmodel", "input": "a", "dimensions": 99}).json()
    assert len(body["data"][0]["embedding"]) == 4


def test_oai_client_decodes_base64(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="toolmodel", input="a")  # base64 on the wire
    assert resp.data[0].embedding == pytest.approx([0.6, 0.0, 0.8, 0.0], abs=1e-7)


# --- models ---------------------------------------------------------------------------------------
def test_models(client: openai.OpenAI, http: TestClient) -> None:
    listed = {m.id: m for m in client.models.list().data}
    assert set(listed) == {"toolmodel:latest", "hf.co/someorg/repo:Q4_K_M"}
    assert listed["toolmodel:latest"].owned_by == "library"
    assert listed["hf.co/someorg/repo:Q4_K_M"].owned_by == "someorg"
    assert listed["toolmodel:latest"].created == int(datetime(2025, 1, 2, tzinfo=timezone.utc).timestamp())
    assert client.models.retrieve("hf.co/someorg/repo:Q4_K_M").id == "hf.co/someorg/repo:Q4_K_M"
    r = http.get("/v1/models/bad%20name!")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
