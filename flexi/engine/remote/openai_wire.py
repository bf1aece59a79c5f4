"""The OpenAI-compatible dialect (OpenAI-style services, vLLM, llama.cpp's llama-server).

The backend's URL is its OpenAI base URL (the one the `openai` SDK takes, usually ending in /v1).
Every call streams (`stream_options.include_usage`, so the usage comes from the backend's own token
counts); non-streamed answers are collected above, like local ones. Tools, tool results and images go in
OpenAI's shapes; the engine's tool calls (streamed in pieces, by index) come back as one `ToolCalls` event and
its separate reasoning (`reasoning_content`, vLLM and llama-server) as `ThinkingChunk`s when thinking was asked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from flexi.engine.remote.wire import (
    BackendFailed,
    Clock,
    as_int,
    cut_off,
    finish_reading,
    finish_reason,
    garbage,
    image_data_url,
    lines,
    open_stream,
    post_json,
    tool_call,
)
from flexi.engine.types import (
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GenerationRequest,
    GenerationStats,
    TextChunk,
    ThinkingChunk,
    ToolCalls,
)

Event = TextChunk | ThinkingChunk | ToolCalls | GenerationStats


def messages(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flexi's messages (Ollama's shape) in OpenAI's: tool calls with ids and JSON-string arguments, tool
    results answering a call id (a result without one answers the oldest open call of its tool), images as
    data-URL content parts."""
    out: list[dict[str, Any]] = []
    open_calls: list[tuple[str, str]] = []  # (id, name) of calls not yet answered
    for i, m in enumerate(chat):
        msg: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("images"):
            msg["content"] = [{"type": "text", "text": msg["content"]}] + \
                [{"type": "image_url", "image_url": {"url": image_data_url(img)}} for img in m["images"]]
        if m.get("tool_calls"):
            calls = []
            for j, c in enumerate(m["tool_calls"]):
                fn = c.get("function") or {}
                call_id = c.get("id") or f"call_{i}_{j}"
                args = fn.get("arguments")
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": fn.get("name"), "arguments": args if isinstance(args, str) else json.dumps(args or {})}})
                open_calls.append((call_id, fn.get("name") or ""))
            msg["tool_calls"] = calls
        if m["role"] == "tool":
            call_id = m.get("tool_call_id")
            if not call_id:
                named = [pair for pair in open_calls if pair[1] == m.get("name")] or open_calls
                match = named[0] if named else None
                call_id = match[0] if match else f"call_{i}"
            open_calls = [pair for pair in open_calls if pair[0] != call_id]
            msg["tool_call_id"] = call_id
            if m.get("name"):
                msg["name"] = m["name"]
        out.append(msg)
    return out


class _Calls:
    """Streamed tool calls: each arrives in pieces (id and name first, then the arguments' text), by index."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, Any]] = {}

    def add(self, deltas: Any, backend: str) -> None:
        if not isinstance(deltas, list):
            raise garbage(backend)
        for position, delta in enumerate(deltas):
            if not isinstance(delta, dict):
                raise garbage(backend)
            index = delta.get("index", position)
            part = self.parts.setdefault(index if isinstance(index, int) else position,
                                         {"id": None, "name": "", "arguments": ""})
            fn = delta.get("function") if isinstance(delta.get("function"), dict) else {}
            if isinstance(delta.get("id"), str):
                part["id"] = delta["id"]
            if isinstance(fn.get("name"), str):
                part["name"] += fn["name"]
            args = fn.get("arguments")
            if isinstance(args, str):
                part["arguments"] += args
            elif isinstance(args, dict):  # a whole (non-streamed) message's object
                part["arguments"] = json.dumps(args)

    def calls(self, backend: str) -> list[dict[str, Any]]:
        return [tool_call(p["name"], p["arguments"], backend, p["id"]) for _, p in sorted(self.parts.items())]


def payload(model: str, req: GenerationRequest, kind: str) -> dict[str, Any]:
    """The body for `req`: standard fields for every service, the engines' sampling extras for vLLM and
    llama-server (a public API may refuse fields it does not know)."""
    s = req.sampling
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                            "temperature": s.temperature, "top_p": s.top_p,
                            "presence_penalty": s.presence_penalty, "frequency_penalty": s.frequency_penalty}
    if not req.open_output:
        body["max_tokens"] = req.max_tokens
    if req.messages is not None:
        body["messages"] = messages(req.messages)
    else:
        body["prompt"] = req.prompt
    if req.stop:
        body["stop"] = list(req.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if kind in ("vllm", "llamacpp"):
        body.update(top_k=s.top_k, min_p=s.min_p)
        body["repetition_penalty" if kind == "vllm" else "repeat_penalty"] = s.repeat_penalty
    if req.messages is not None:
        if req.tools:
            body["tools"] = req.tools
            if req.tool_choice == "required":
                body["tool_choice"] = "required"
            elif req.tool_choice:
                body["tool_choice"] = {"type": "function", "function": {"name": req.tool_choice}}
        if req.think is not None and kind in ("vllm", "llamacpp"):  # the template's switch, as Ollama's think
            body["chat_template_kwargs"] = {"enable_thinking": bool(req.think)}
        if isinstance(req.think, str):
            body["reasoning_effort"] = req.think
    if isinstance(req.output_format, str):  # "json" (the service refused any other text)
        body["response_format"] = {"type": "json_object"}
    elif isinstance(req.output_format, dict):
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": req.output_format, "strict": True}}
    return body


async def generate(client: httpx.AsyncClient, backend: str, model: str, req: GenerationRequest,
                   kind: str) -> AsyncIterator[Event]:
    clock = Clock()
    path = "chat/completions" if req.messages is not None else "completions"
    resp = await open_stream(client, backend, path, payload(model, req, kind))
    n, finish, usage, done = 0, None, {}, False
    calls = _Calls()
    stream = lines(resp, backend)
    try:
        async for line in stream:
            if not line.startswith("data:"):
                continue  # SSE comments (keep-alives, Flexi's queue status) and blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                await finish_reading(stream)  # the connection goes back to the pool
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise garbage(backend) from None
            if not isinstance(chunk, dict):
                raise garbage(backend)
            if chunk.get("error"):
                err = chunk["error"]
                message = err.get("message") if isinstance(err, dict) else err
                raise BackendFailed(f'backend "{backend}" failed: {str(message)[:200]}')
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                if not delta and isinstance(choice.get("message"), dict):  # a backend that answered at once
                    delta = choice["message"]
                if req.tools and delta.get("tool_calls"):
                    calls.add(delta["tool_calls"], backend)
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if req.think and isinstance(reasoning, str):  # vLLM, llama-server: the reasoning apart
                    clock.token()
                    yield ThinkingChunk(reasoning)
                text = delta.get("content") if req.messages is not None else choice.get("text")
                if isinstance(text, str) and text:
                    clock.token()
                    n += 1
                    yield TextChunk(text, n)
                if choice.get("finish_reason"):
                    finish = finish_reason(choice["finish_reason"])
    finally:
        await resp.aclose()
    if finish is None and not done:
        raise cut_off(backend)
    if calls.parts:
        yield ToolCalls(calls.calls(backend))
    reason: FinishReason = finish or "stop"
    yield clock.stats(reason, as_int(usage.get("prompt_tokens")), as_int(usage.get("completion_tokens")) or n)


async def embed(client: httpx.AsyncClient, backend: str, model: str, req: EmbeddingRequest) -> EmbeddingResult:
    clock = Clock()
    data = await post_json(client, backend, "embeddings", {"model": model, "input": list(req.inputs)})
    try:
        rows = sorted(data["data"], key=lambda row: row["index"])
        vectors = [[float(x) for x in row["embedding"]] for row in rows]
    except (KeyError, TypeError, ValueError):
        raise garbage(backend) from None
    if len(vectors) != len(req.inputs):
        raise garbage(backend)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return EmbeddingResult(embeddings=vectors, prompt_tokens=as_int(usage.get("prompt_tokens")),
                           total_ns=clock.stats("stop", 0, 0).eval_ns)
