"""Tool calling through remote engines, end to end, with the official `openai` and `ollama` clients.

A llama-server runs the default model with a Hermes-style chat template (tests/service/hermes_tools.jinja,
Qwen 2.5's tool format: the model's own template knows no tools), so llama-server offers the tools and parses
the model's `<tool_call>` into structured calls. Flexi B serves it as `tools-llama` (kind `llamacpp`); Flexi A
serves it directly (`llamacpp`, `vllm`) and through B (`flexi`: B's Ollama API; `openai`: B's /v1), so every
wire is crossed in both directions. The tiny model calls the tool reliably when the conversation shows it two
earlier calls (temperature 0)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.conftest import RunningServer, free_port, start_server, stop_server
from tests.llama_server import LlamaServer, start_llama_server

TEMPLATE = Path(__file__).with_name("hermes_tools.jinja")
MODELS = ["tools-llama", "tools-vllm", "tools-flexi", "tools-openai"]
WEATHER = {"type": "function", "function": {"name": "weather", "description": "The weather in a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
SYSTEM = {"role": "system", "content": "You answer every question with a tool call."}


def _openai_history(question: str = "What is the weather in Paris?") -> list[dict]:
    """Two earlier questions answered with calls (OpenAI's shape), then the question."""
    out: list[dict] = [SYSTEM]
    for i, city in enumerate(("Berlin", "Rome")):
        out += [{"role": "user", "content": f"What is the weather in {city}?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": f"c{i}", "type": "function", "function": {"name": "weather",
                                                                     "arguments": json.dumps({"city": city})}}]}]
    return out + [{"role": "user", "content": question}]


def _ollama_history() -> list[dict]:
    out: list[dict] = [SYSTEM]
    for city in ("Berlin", "Rome"):
        out += [{"role": "user", "content": f"What is the weather in {city}?"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "weather",
                                                                                  "arguments": {"city": city}}}]}]
    return out + [{"role": "user", "content": "What is the weather in Paris?"}]


@dataclass
class Stack:
    a: RunningServer
    b: RunningServer
    llama: LlamaServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("remote-tools")
    llama = start_llama_server(root / "llama-server.log", free_port(), slots=2, context=4096,
                               extra=("--jinja", "--chat-template-file", str(TEMPLATE)))
    try:
        (root / "b").mkdir()
        (root / "b" / "config.toml").write_text(f'''
[[backends]]
name = "llama"
url = "{llama.url}/v1"
kind = "llamacpp"
models = {{ "tools-llama" = "smollm2" }}
context_length = 2048
''')
        b = start_server(root / "b")
        try:
            (root / "a").mkdir()
            (root / "a" / "config.toml").write_text(f'''
[[backends]]
name = "llama"
url = "{llama.url}/v1"
kind = "llamacpp"
models = {{ "tools-llama" = "smollm2" }}
context_length = 2048

[[backends]]
name = "llama-as-vllm"
url = "{llama.url}/v1"
kind = "vllm"
models = {{ "tools-vllm" = "smollm2", "tools-vision" = "smollm2" }}
context_length = 2048
capabilities = ["completion", "tools", "vision"]

[[backends]]
name = "flexi-b"
url = "{b.url}"
kind = "flexi"
models = {{ "tools-flexi" = "tools-llama" }}
context_length = 2048

[[backends]]
name = "flexi-b-openai"
url = "{b.url}/v1"
kind = "openai"
models = {{ "tools-openai" = "tools-llama" }}
context_length = 2048

[[backends]]
name = "text-only"
url = "{llama.url}/v1"
kind = "llamacpp"
models = {{ "plain-llama" = "smollm2" }}
capabilities = ["completion"]
''')
            a = start_server(root / "a")
            try:
                yield Stack(a, b, llama)
            finally:
                stop_server(a)
        finally:
            stop_server(b)
    finally:
        llama.stop()


def _oai(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.a.url + "/v1", api_key="unused", timeout=120)


@pytest.mark.parametrize("name", MODELS)
def test_openai_client_gets_tool_calls(stack: Stack, name: str) -> None:
    done = _oai(stack).chat.completions.create(model=name, messages=_openai_history(), tools=[WEATHER],  # type: ignore[arg-type, list-item]
                                               max_tokens=40, temperature=0)
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    [call] = choice.message.tool_calls or []
    assert call.id and call.type == "function" and call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert done.usage is not None and done.usage.completion_tokens > 0
    chunks = list(_oai(stack).chat.completions.create(model=name, messages=_openai_history(), tools=[WEATHER],  # type: ignore[arg-type, list-item]
                                                      max_tokens=40, temperature=0, stream=True))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas and {d.index for d in deltas} == {0} and deltas[0].id and deltas[0].function.name == "weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("name", MODELS)
def test_ollama_client_gets_tool_calls(stack: Stack, name: str) -> None:
    client = ollama.Client(host=stack.a.url, timeout=120)
    options = {"num_predict": 40, "temperature": 0}
    answer = client.chat(model=name, messages=_ollama_history(), tools=[WEATHER], options=options)
    [call] = answer.message.tool_calls or []
    assert call.function.name == "weather" and call.function.arguments == {"city": "Paris"}
    assert answer.done and answer.eval_count > 0
    parts = list(client.chat(model=name, messages=_ollama_history(), tools=[WEATHER], options=options, stream=True))
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [(c.function.name, c.function.arguments) for c in calls] == [("weather", {"city": "Paris"})]
    assert parts[-1].done


def _direct_prompt_tokens(stack: Stack, messages: list[dict]) -> int:
    r = httpx.post(stack.llama.url + "/v1/chat/completions", json={"messages": messages, "tools": [WEATHER],
                                                                   "max_tokens": 1, "temperature": 0}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"]


@pytest.mark.parametrize("name", MODELS)
def test_a_tool_result_round_trip(stack: Stack, name: str) -> None:
    """The call the model made and its result go back to the engine: the engine sees exactly the conversation
    it would get directly (its own prompt token count), in either client's shape."""
    first = _oai(stack).chat.completions.create(model=name, messages=_openai_history(), tools=[WEATHER],  # type: ignore[arg-type, list-item]
                                                max_tokens=40, temperature=0)
    [call] = first.choices[0].message.tool_calls or []
    history = _openai_history() + [
        {"role": "assistant", "content": "", "tool_calls": [{"id": call.id, "type": "function", "function": {
            "name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 degrees"}]
    done = _oai(stack).chat.completions.create(model=name, messages=history, tools=[WEATHER],  # type: ignore[arg-type, list-item]
                                               max_tokens=8, temperature=0)
    assert done.usage is not None and done.usage.prompt_tokens == _direct_prompt_tokens(stack, history)
    ollama_history = _ollama_history() + [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_name": "weather", "content": "sunny, 24 degrees"}]
    answer = ollama.Client(host=stack.a.url, timeout=120).chat(model=name, messages=ollama_history, tools=[WEATHER],
                                                               options={"num_predict": 8, "temperature": 0})
    assert answer.prompt_eval_count == done.usage.prompt_tokens  # the same conversation reached the engine


def test_capabilities_are_shown_and_enforced(stack: Stack) -> None:
    show = httpx.post(stack.a.url + "/api/show", json={"model": "tools-llama"}, timeout=30).json()
    assert show["capabilities"] == ["completion", "tools"]
    assert httpx.post(stack.a.url + "/api/show", json={"model": "tools-vision"},
                      timeout=30).json()["capabilities"] == ["completion", "tools", "vision"]
    r = httpx.post(stack.a.url + "/api/chat", json={"model": "plain-llama", "messages": _ollama_history(),
                                                    "tools": [WEATHER], "stream": False}, timeout=60)
    assert r.status_code == 400 and r.json()["error"] == '"plain-llama:latest" does not support tools'
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    r = httpx.post(stack.a.url + "/api/chat", json={"model": "tools-llama", "stream": False, "messages": [
        {"role": "user", "content": "What is this?", "images": [image]}]}, timeout=60)
    assert r.status_code == 400 and "does not support images" in r.json()["error"]


def test_images_reach_an_engine_declared_with_vision(stack: Stack) -> None:
    """llama-server without a vision projector refuses the image itself (with HTTP 500, so Flexi says 502):
    proof that it got the image from either dialect, and the client gets that refusal, not an answer that
    silently ignored the image."""
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    r = httpx.post(stack.a.url + "/api/chat", json={"model": "tools-vision", "stream": False, "messages": [
        {"role": "user", "content": "What is this?", "images": [image]}]}, timeout=60)
    assert r.status_code == 502 and "image input is not supported" in r.json()["error"], r.text
    r = httpx.post(stack.a.url + "/v1/chat/completions", json={"model": "tools-vision", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]}]},
                   timeout=60)
    assert r.status_code == 502 and "image input is not supported" in r.json()["error"]["message"], r.text
    r = httpx.post(stack.a.url + "/v1/chat/completions", json={"model": "tools-vision", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}]}]},
                   timeout=60)
    assert r.status_code == 400 and "data: URLs" in r.json()["error"]["message"]
