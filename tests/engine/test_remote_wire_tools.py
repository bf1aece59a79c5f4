"""Tools, tool results, images and thinking on the remote wires: what each dialect sends, and how the engine's
tool calls (streamed in pieces or whole) and reasoning come back as Flexi's `ToolCalls` and `ThinkingChunk`."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from typing import Any

import httpx
import pytest

from flexi.engine.remote import ollama_wire, openai_wire
from flexi.engine.remote.wire import BackendFailed, image_data_url
from flexi.engine.types import (
    GenerationRequest,
    GenerationStats,
    TextChunk,
    ThinkingChunk,
    ToolCalls,
)
from tests.engine.test_remote_wire import Body, client, collect, ndjson, sse

TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object",
                                                                          "properties": {"city": {"type": "string"}}}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
#: Flexi's message shape (Ollama's): a call with object arguments, its result naming the tool, an image
HISTORY = [{"role": "user", "content": "Weather in Ulm and Bonn?", "images": [PNG]},
           {"role": "assistant", "content": "", "tool_calls": [
               {"type": "function", "function": {"name": "weather", "arguments": {"city": "Ulm"}}},
               {"type": "function", "id": "given", "function": {"name": "weather", "arguments": {"city": "Bonn"}}}]},
           {"role": "tool", "content": "sunny", "name": "weather"},
           {"role": "tool", "content": "rainy", "tool_call_id": "given"}]
REQ = GenerationRequest(model="m", prompt="…", max_tokens=20, messages=HISTORY, tools=[TOOL])


def _openai(req: GenerationRequest, *chunks: dict[str, Any] | str) -> tuple[list[Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, stream=Body(sse(*chunks)))

    events = asyncio.run(collect(openai_wire.generate(client(handler, "http://engine/v1"), "e", "their", req, "vllm")))
    return events, seen


def test_openai_payload_carries_tools_results_and_images() -> None:
    body = openai_wire.payload("their", dataclasses.replace(REQ, tool_choice="weather"), "openai")
    assert body["tools"] == [TOOL]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    user, assistant, first, second = body["messages"]
    assert user["content"] == [{"type": "text", "text": "Weather in Ulm and Bonn?"},
                               {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]
    calls = assistant["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"city": "Ulm"}', '{"city": "Bonn"}']  # JSON text
    assert calls[1]["id"] == "given" and calls[0]["id"] and calls[0]["type"] == "function"
    # a result without an id answers the oldest open call of its tool; one with an id answers that call
    assert (first["tool_call_id"], first["name"]) == (calls[0]["id"], "weather")
    assert second["tool_call_id"] == "given" and "think" not in body and "chat_template_kwargs" not in body
    assert openai_wire.payload("their", dataclasses.replace(REQ, tool_choice="required"), "vllm")["tool_choice"] == "required"
    assert "tool_choice" not in openai_wire.payload("their", REQ, "vllm")  # the model decides


def test_openai_thinking_switch() -> None:
    on = openai_wire.payload("their", dataclasses.replace(REQ, think=True), "llamacpp")
    assert on["chat_template_kwargs"] == {"enable_thinking": True} and "reasoning_effort" not in on
    level = openai_wire.payload("their", dataclasses.replace(REQ, think="high"), "openai")
    assert level["reasoning_effort"] == "high" and "chat_template_kwargs" not in level  # a public API: standard only


def test_streamed_tool_calls_are_assembled_by_index() -> None:
    """Two calls whose pieces interleave; the arguments arrive as JSON text in pieces."""
    events, seen = _openai(REQ,
                           {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "a", "type": "function",
                                                                    "function": {"name": "weather", "arguments": ""}}]}}]},
                           {"choices": [{"delta": {"tool_calls": [{"index": 1, "id": "b",
                                                                    "function": {"name": "weather", "arguments": '{"ci'}}]}}]},
                           {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Ulm"}'}}]}}]},
                           {"choices": [{"delta": {"tool_calls": [{"index": 1, "function": {"arguments": 'ty": "Bonn"}'}}]}}]},
                           {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
                           {"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 12}}, "[DONE]")
    [calls] = [e for e in events if isinstance(e, ToolCalls)]
    assert calls.calls == [{"name": "weather", "arguments": {"city": "Ulm"}, "id": "a"},
                           {"name": "weather", "arguments": {"city": "Bonn"}, "id": "b"}]
    assert not [e for e in events if isinstance(e, TextChunk)]
    stats = events[-1]
    assert isinstance(stats, GenerationStats) and (stats.completion_tokens, stats.finish_reason) == (12, "stop")
    assert seen[0]["tools"] == [TOOL]


def test_a_whole_answer_with_tool_calls_is_read_too() -> None:
    """A backend that answers in one piece (`message`, arguments as text) gives the same calls."""
    events, _ = _openai(REQ, {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Ulm"}'}}]},
        "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}, "[DONE]")
    assert [e.calls for e in events if isinstance(e, ToolCalls)] == [[{"name": "weather", "arguments": {"city": "Ulm"},
                                                                      "id": "x"}]]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"Paris"'])
def test_unreadable_tool_arguments_fail_that_request_only(arguments: str) -> None:
    """What the model wrote is the answer's content, which any user can provoke: the request fails clearly,
    but the backend's circuit does not count it and no other backend is asked (no outage by prompt)."""
    with pytest.raises(BackendFailed, match="cannot read") as failed:
        _openai(REQ, {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "weather",
                                                                                        "arguments": arguments}}]}}]},
                {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}, "[DONE]")
    assert failed.value.reason is None and failed.value.retry is False


def test_reasoning_content_becomes_thinking_only_when_asked() -> None:
    chunks = ({"choices": [{"delta": {"reasoning_content": "Hmm, "}}]}, {"choices": [{"delta": {"reasoning": "ok."}}]},
              {"choices": [{"delta": {"content": "Yes"}, "finish_reason": "stop"}]}, "[DONE]")
    events, seen = _openai(dataclasses.replace(REQ, think=True), *chunks)
    assert [e.text for e in events if isinstance(e, ThinkingChunk)] == ["Hmm, ", "ok."]
    assert [e.text for e in events if isinstance(e, TextChunk)] == ["Yes"]
    assert seen[0]["chat_template_kwargs"] == {"enable_thinking": True}
    events, _ = _openai(REQ, *chunks)
    assert not [e for e in events if isinstance(e, ThinkingChunk)]  # not asked for: not shown


def test_tool_calls_are_ignored_when_no_tools_were_offered() -> None:
    events, seen = _openai(dataclasses.replace(REQ, tools=None),
                           {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "x"}}]}}]},
                           {"choices": [{"delta": {"content": "Hi"}, "finish_reason": "stop"}]}, "[DONE]")
    assert not [e for e in events if isinstance(e, ToolCalls)] and "tools" not in seen[0]


def test_ollama_payload_and_answer() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, stream=Body(ndjson(
            {"message": {"role": "assistant", "content": "", "thinking": "Let me see."}, "done": False},
            {"message": {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "weather", "arguments": {"city": "Ulm"}}}]}, "done": False},
            {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
             "prompt_eval_count": 30, "eval_count": 9})))

    req = dataclasses.replace(REQ, think="low", tool_choice="required")
    events = asyncio.run(collect(ollama_wire.generate(client(handler), "o", "their", req)))
    [body] = seen
    assert body["tools"] == [TOOL] and body["think"] == "low" and "tool_choice" not in body  # Ollama has none
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Ulm and Bonn?", "images": [PNG]},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Ulm"}}},
                                                            {"function": {"name": "weather", "arguments": {"city": "Bonn"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "weather"},
        {"role": "tool", "content": "rainy"}]
    assert [type(e) for e in events] == [ThinkingChunk, ToolCalls, GenerationStats]
    assert events[0].text == "Let me see." and events[1].calls == [{"name": "weather", "arguments": {"city": "Ulm"}}]
    assert events[2].completion_tokens == 9


def test_image_data_urls_name_the_type() -> None:
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 12).decode()
    assert image_data_url(jpeg) == "data:image/jpeg;base64," + jpeg
    assert image_data_url(PNG).startswith("data:image/png;base64,")
