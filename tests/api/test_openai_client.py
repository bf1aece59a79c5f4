"""End-to-end tests of the OpenAI-compatible API (/v1/*) against a real Flexi server and the real default model.

The official `openai` client covers what applications see; raw httpx covers the
exact wire format (SSE framing, error shape, system_fingerprint).
"""

from __future__ import annotations

import base64
import json
import math
import re
import socket
import struct
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.e2e

MODEL = "smollm2:135m"
TOOLS_MODEL = "smol-tools:latest"
HI = [{"role": "user", "content": "hi"}]  # SmolLM2 at temperature 0: "Hello! How can I assist you today?"

# SmolLM2's template with tool definitions, tool calls and tool results added, so the
# router's tool path can be exercised end to end (SmolLM2's own template has no tools).
TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou can call these functions: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "{% if message.tool_calls %}{% for c in message.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# Forces the model to answer with a call in the "whole reply is {name, arguments}" shape.
CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": ["get_weather"]},
        "arguments": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
                      "required": ["city"], "additionalProperties": False},
    },
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
CALL_FORMAT = {"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SCHEMA, "strict": True}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _openai_server(server: RunningServer) -> str:
    """The shared real server from tests/conftest.py."""
    return server.url


@pytest.fixture(scope="session")
def client(_openai_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{_openai_server}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(_openai_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=_openai_server, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def tools_model(http: httpx.Client) -> str:
    r = http.post("/api/create", json={"model": TOOLS_MODEL, "from": MODEL, "template": TOOLS_TEMPLATE, "stream": False})
    assert r.status_code == 200, r.text
    return TOOLS_MODEL


def _sse_events(raw: str) -> list[str]:
    assert raw.endswith("\n\n"), raw[-200:]
    events = raw[:-2].split("\n\n")
    for ev in events:
        assert ev.startswith("data: "), ev
        assert "\n" not in ev, ev
    return [ev[len("data: "):] for ev in events]


# --- chat completions -------------------------------------------------------------------
def test_chat_completion(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=16, temperature=0)
    assert resp.id.startswith("chatcmpl-")
    assert resp.object == "chat.completion"
    assert resp.model == MODEL
    assert abs(resp.created - time.time()) < 120
    assert resp.system_fingerprint and resp.system_fingerprint.startswith("fp_flexi_")
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.startswith("Hello")
    assert choice.message.tool_calls is None
    assert choice.finish_reason in ("stop", "length")
    u = resp.usage
    assert u is not None and u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens >= 0


def test_a_long_shared_system_prompt_is_served_from_the_prefix_cache(client: openai.OpenAI) -> None:
    """A course assistant's instructions are computed once; an unrelated request in
    between (another student) must not evict them."""
    rules = " ".join(f"Rule {i}: answer course question {i} briefly and kindly." for i in range(40))

    def ask(system: str, question: str) -> openai.types.CompletionUsage:
        resp = client.chat.completions.create(model=MODEL, max_tokens=1, temperature=0, messages=[
            {"role": "system", "content": system}, {"role": "user", "content": question}])
        assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
        return resp.usage

    first = ask(rules, "What is rule 3?")
    assert first.prompt_tokens > 400
    ask("You are a poet.", "A line about rain, please.")
    second = ask(rules, "And rule 7?")
    assert second.prompt_tokens_details is not None
    assert second.prompt_tokens_details.cached_tokens >= first.prompt_tokens - 20


def test_chat_stream_with_usage_matches_non_stream(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=12, temperature=0, seed=1)
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, max_tokens=12, temperature=0, seed=1,
                                                 stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant" and first.delta.content == ""
    with_choices = [c for c in chunks if c.choices]
    last = with_choices[-1].choices[0]
    assert last.finish_reason == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == whole.choices[0].message.content
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens
    assert usage_chunk.usage.total_tokens == usage_chunk.usage.prompt_tokens + usage_chunk.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, temperature=0, stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices[0].delta.content is None


def test_chat_stop_and_length(client: openai.OpenAI) -> None:
    # greedy output differs between CPUs (Xeon: "Hello!", EPYC: "Hello there!"), so stop at the first
    # space, which any answer of 16 tokens has: the stop string must end it and must not show
    stopped = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=16, temperature=0, stop=[" ", "\n"])
    assert stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"
    assert " " not in stopped.choices[0].message.content and "\n" not in stopped.choices[0].message.content
    short = client.chat.completions.create(model=MODEL, messages=HI, max_completion_tokens=3, temperature=0)
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 3


def test_chat_content_parts_and_roles(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, max_tokens=8, temperature=0, top_p=0.9, presence_penalty=0.1, frequency_penalty=0.1,
        user="student-42",
        messages=[{"role": "developer", "content": "You are terse."},
                  {"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": "hello."}]}],
        extra_body={"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.0, "keep_alive": "10m"},
    )
    assert resp.choices[0].message.content


def test_json_mode_gives_parseable_json(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, max_tokens=32, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": 'Return the JSON object {"ok": true} and nothing else.'}])
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 12}},
              "required": ["answer"], "additionalProperties": False}
    resp = client.chat.completions.create(
        model=MODEL, max_tokens=32, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}},
        messages=[{"role": "user", "content": "What is the capital of France? Answer in JSON."}])
    assert resp.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(resp.choices[0].message.content or ""), schema)


def test_invalid_json_schema_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}})
    assert err.value.body["param"] == "response_format"  # type: ignore[index]


def test_tools_on_model_without_tool_support_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, tools=[WEATHER_TOOL])
    assert "does not support tools" in err.value.message
    assert err.value.body["param"] == "tools"  # type: ignore[index]
    # tool_choice "none" means the tools are not offered at all, so the request works
    resp = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, temperature=0,
                                          tools=[WEATHER_TOOL], tool_choice="none")
    assert resp.choices[0].message.tool_calls is None


def test_images_on_text_model_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert "images" in err.value.message


def test_n_and_lone_top_logprobs_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, n=2)
    assert err.value.body["param"] == "n" and "n > 1 is not supported" in err.value.message  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:  # logprobs work (tests/api/test_logprobs_e2e.py); alone, no
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, top_logprobs=3)
    assert err.value.body["param"] == "top_logprobs"  # type: ignore[index]


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model:7b", messages=HI, max_tokens=4)
    assert err.value.body["message"] == 'model "no-such-model:7b" not found, try pulling it first'  # type: ignore[index]
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=4)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


# --- tool calls (on a copy of SmolLM2 whose template knows tools) -------------------------------
def test_tool_call_output(client: openai.OpenAI, tools_model: str) -> None:
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    resp = client.chat.completions.create(model=tools_model, messages=msgs, tools=[WEATHER_TOOL], max_tokens=32,
                                          temperature=0, response_format=CALL_FORMAT)  # type: ignore[arg-type]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].id.startswith("call_") and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}

    # The same answer streamed: one delta with the calls, then finish_reason "tool_calls".
    chunks = list(client.chat.completions.create(model=tools_model, messages=msgs, tools=[WEATHER_TOOL], max_tokens=32,
                                                 temperature=0, response_format=CALL_FORMAT, stream=True))  # type: ignore[arg-type]
    deltas = [c.choices[0].delta for c in chunks]
    assert deltas[0].role == "assistant"
    streamed = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert len(streamed) == 1 and streamed[0].index == 0 and streamed[0].id.startswith("call_")
    assert streamed[0].function.name == "get_weather"
    assert json.loads(streamed[0].function.arguments or "") == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # Sending the call and its result back: JSON-string arguments are parsed for the template.
    follow = client.chat.completions.create(model=tools_model, tools=[WEATHER_TOOL], max_tokens=8, temperature=0, messages=[
        *msgs,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0].id, "type": "function", "function": {"name": "get_weather", "arguments": calls[0].function.arguments}}]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temperature": 21}'},
    ])
    assert follow.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_tool_choice_unknown_function_is_400(client: openai.OpenAI, tools_model: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=tools_model, messages=HI, tools=[WEATHER_TOOL], max_tokens=4,
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    assert err.value.body["param"] == "tool_choice"  # type: ignore[index]


def test_bad_tool_call_arguments_is_400(client: openai.OpenAI, tools_model: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=tools_model, tools=[WEATHER_TOOL], max_tokens=4, messages=[
            {"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]}])
    assert err.value.body["param"] == "messages.0.tool_calls.0.function.arguments"  # type: ignore[index]


# --- text completions -----------------------------------------------------------------
def test_completion(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    resp = client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0)
    assert resp.id.startswith("cmpl-") and resp.object == "text_completion" and resp.model == MODEL
    assert resp.system_fingerprint and resp.system_fingerprint.startswith("fp_flexi_")
    c = resp.choices[0]
    assert c.index == 0 and c.logprobs is None and c.finish_reason in ("stop", "length")
    assert "Paris" in c.text
    assert not c.text.startswith(prompt)  # raw continuation, no chat template, no echo
    assert resp.usage is not None and resp.usage.prompt_tokens <= 8  # the prompt was sent raw

    echoed = client.completions.create(model=MODEL, prompt=[prompt], max_tokens=5, temperature=0, echo=True)
    assert echoed.choices[0].text == prompt + c.text


def test_completion_default_max_tokens_is_16(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0,
                                     extra_body={"ignore_eos": True})
    assert resp.usage is not None and resp.usage.completion_tokens == 16
    assert resp.choices[0].finish_reason == "length"


def test_completion_stream(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    whole = client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0)
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0, echo=True,
                                            stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == prompt + whole.choices[0].text
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completion_prompt_shapes_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt=["one"] * 65, max_tokens=4)
    assert "too many prompts" in err.value.message
    assert err.value.body["param"] == "prompt"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt=[1, -2, 3], max_tokens=4)
    assert "negative token id" in err.value.message
    with pytest.raises(openai.BadRequestError):  # beyond the vocabulary: the runner refuses it, and keeps serving
        client.completions.create(model=MODEL, prompt=[[1, 2], [10**8]], max_tokens=4)
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="x", max_tokens=4, n=2)
    assert err.value.body["param"] == "n"  # type: ignore[index]


# --- embeddings ----------------------------------------------------------------------------
def _norm(vec: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vec))


def test_embeddings_default_base64(client: openai.OpenAI, http: httpx.Client) -> None:
    # The openai client asks for base64 by default and decodes it to floats.
    resp = client.embeddings.create(model=MODEL, input=["Hello world", "Bonjour le monde"])
    assert resp.object == "list" and resp.model == MODEL
    assert [d.index for d in resp.data] == [0, 1]
    assert all(d.object == "embedding" for d in resp.data)
    dim = len(resp.data[0].embedding)
    assert dim > 100 and len(resp.data[1].embedding) == dim
    assert abs(_norm(resp.data[0].embedding) - 1) < 1e-3
    assert resp.usage.prompt_tokens > 0 and resp.usage.total_tokens == resp.usage.prompt_tokens

    # float and base64 agree (base64 = little-endian float32)
    floats = http.post("/v1/embeddings", json={"model": MODEL, "input": "Hello world", "encoding_format": "float"}).json()
    b64 = http.post("/v1/embeddings", json={"model": MODEL, "input": "Hello world", "encoding_format": "base64"}).json()
    vec = floats["data"][0]["embedding"]
    raw = base64.b64decode(b64["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == len(vec) == dim
    assert max(abs(a - b) for a, b in zip(decoded, vec)) < 1e-6
    assert max(abs(a - b) for a, b in zip(resp.data[0].embedding, vec)) < 1e-6


def test_embeddings_float_and_dimensions(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model=MODEL, input="Hello world", encoding_format="float", dimensions=8)
    vec = resp.data[0].embedding
    assert len(vec) == 8 and all(isinstance(v, float) for v in vec)
    assert abs(_norm(vec) - 1) < 1e-5


def test_embeddings_bad_inputs(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MODEL, input=[1, 2, 3])
    assert err.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input=[])
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MODEL, input="x", encoding_format="int8")  # type: ignore[arg-type]
    assert err.value.body["param"] == "encoding_format"  # type: ignore[index]


# --- models ---------------------------------------------------------------------------------
def test_models_list_and_retrieve(client: openai.OpenAI, http: httpx.Client) -> None:
    models = client.models.list().data
    ids = [m.id for m in models]
    assert MODEL in ids
    m = next(m for m in models if m.id == MODEL)
    assert m.object == "model" and m.owned_by == "library" and abs(m.created - time.time()) < 10 * 365 * 86400
    one = client.models.retrieve(MODEL)
    assert one.id == MODEL and one.created == m.created
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("hf.co/org/repo:Q4_K_M")  # slashes and colon reach the route (":path")
    assert err.value.code == "model_not_found"
    r = http.get("/v1/models/hf.co/org/repo:Q4_K_M")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == 'model "hf.co/org/repo:Q4_K_M" not found, try pulling it first'


# --- wire details (raw HTTP) ----------------------------------------------------------------
def test_sse_framing(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": HI, "max_tokens": 4, "temperature": 0,
                                                "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _sse_events(r.text)
    assert events[-1] == "[DONE]"
    objs = [json.loads(e) for e in events[:-1]]
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert objs[-2]["choices"][0]["delta"] == {} and objs[-2]["choices"][0]["finish_reason"] == "length"
    assert objs[-1]["choices"] == [] and set(objs[-1]["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    for o in objs:
        assert o["object"] == "chat.completion.chunk" and o["model"] == MODEL
        assert o["system_fingerprint"].startswith("fp_flexi_") and isinstance(o["created"], int)

    r = http.post("/v1/completions", json={"model": MODEL, "prompt": "One, two,", "max_tokens": 3, "stream": True})
    events = _sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] in ("stop", "length")


def test_non_stream_wire_shape(http: httpx.Client) -> None:
    body = http.post("/v1/chat/completions", json={"model": MODEL, "messages": HI, "max_tokens": 3}).json()
    assert set(body) >= {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": body["usage"]["prompt_tokens_details"]["cached_tokens"]}
    fp = body["system_fingerprint"]
    assert fp == http.post("/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 1}).json()["system_fingerprint"]


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return err


def test_error_shapes(http: httpx.Client) -> None:
    err = _error(http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [',
                           headers={"content-type": "application/json"}), 400)
    assert err["type"] == "invalid_request_error" and "invalid JSON" in err["message"]

    err = _error(http.post("/v1/chat/completions", json={"model": MODEL, "messages": HI, "temperature": 3}), 400)
    assert err["param"] == "temperature"
    err = _error(http.post("/v1/chat/completions", json={"model": MODEL, "messages": "hi"}), 400)
    assert err["param"] is not None and err["param"].startswith("messages")
    err = _error(http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}), 400)
    assert err["param"] == "messages.0.role"
    err = _error(http.post("/v1/chat/completions", json={"model": MODEL, "messages": []}), 400)
    assert err["param"] == "messages"
    err = _error(http.post("/v1/chat/completions", json={"messages": HI}), 400)
    assert err["param"] == "model"
    for fmt in ({"type": "xml"}, "json", {"type": "json_schema"}, {"type": "json_schema", "json_schema": {"schema": 3}}):
        err = _error(http.post("/v1/chat/completions", json={"model": MODEL, "messages": HI, "response_format": fmt}), 400)
        assert err["param"] == "response_format", fmt

    err = _error(http.post("/v1/chat/completions", json={"model": "nope:1b", "messages": HI}), 404)
    assert err == {"message": 'model "nope:1b" not found, try pulling it first', "type": "invalid_request_error",
                   "param": "model", "code": "model_not_found"}
    err = _error(http.get("/v1/models/nope:1b"), 404)
    assert err["code"] == "model_not_found"

    err = _error(http.post("/v1/completions", json={"model": MODEL}), 400)
    assert err["param"] == "prompt"
    err = _error(http.post("/v1/completions", json={"model": MODEL, "prompt": "x", "suffix": "y"}), 400)
    assert err["param"] == "suffix"


def test_disconnect_stops_generation(server: RunningServer, http: httpx.Client) -> None:
    """A client that goes away mid-stream cancels its sequence: the runner reports that it stopped
    the sequence long before max_tokens, and the model is idle afterwards.

    /api/ps reports an active model's expiry as "now + keep_alive" (moving forward);
    an idle model's expiry is a fixed deadline.
    """
    stopped = re.compile(r"runner stopped it after (\d+) generated tokens")
    before = len(stopped.findall(server.log()))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}], "stream": True,
            "max_tokens": 3000, "ignore_eos": True, "temperature": 0, "keep_alive": "1h"}
    with httpx.Client(base_url=server.url, timeout=60) as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = 0
        for line in lines:
            if line.startswith("data: "):
                got += 1
            if got >= 4:
                break
    deadline = time.monotonic() + 60
    while len(stopped.findall(server.log())) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    counts = [int(n) for n in stopped.findall(server.log())]
    assert len(counts) > before, "the runner was not told to stop the sequence"
    assert counts[-1] < 1000, counts  # stopped when the client left, not at max_tokens=3000

    def expiry() -> datetime:
        return datetime.fromisoformat(next(m["expires_at"] for m in http.get("/api/ps").json()["models"]
                                           if m["name"] == MODEL))

    first = expiry()
    time.sleep(1.5)
    moved = (expiry() - first).total_seconds()
    assert abs(moved) < 0.5, "the model is still busy after the client disconnected"  # busy: moved ≈ 1.5 s
