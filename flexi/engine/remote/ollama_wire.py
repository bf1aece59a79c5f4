"""The Ollama dialect (Ollama itself and another Flexi): /api/chat, /api/generate, /api/embed.

The backend's URL is the server's root (http://host:11434). A Flexi backend's queue and loading
status lines become Flexi's own status events, so a client still sees why it waits. Tools, `think` and images
pass as Ollama takes them; `message.tool_calls` and `thinking` come back as `ToolCalls` and `ThinkingChunk`."""

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
    lines,
    open_stream,
    post_json,
    tool_call,
)
from flexi.engine.types import (
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    GenerationStats,
    StatusEvent,
    TextChunk,
    ThinkingChunk,
    ToolCalls,
)

Event = TextChunk | ThinkingChunk | ToolCalls | GenerationStats | StatusEvent


def messages(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flexi's messages in Ollama's shape: tool calls with object arguments, a tool result naming its tool."""
    out = []
    for m in chat:
        msg: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("images"):
            msg["images"] = list(m["images"])
        if m.get("tool_calls"):
            msg["tool_calls"] = [{"function": {"name": (c.get("function") or {}).get("name"),
                                               "arguments": (c.get("function") or {}).get("arguments") or {}}}
                                 for c in m["tool_calls"]]
        if m["role"] == "tool" and m.get("name"):
            msg["tool_name"] = m["name"]
        out.append(msg)
    return out


def payload(model: str, req: GenerationRequest) -> dict[str, Any]:
    s = req.sampling
    options: dict[str, Any] = {"temperature": s.temperature, "top_k": s.top_k,
                               "top_p": s.top_p, "min_p": s.min_p, "typical_p": s.typical_p,
                               "repeat_penalty": s.repeat_penalty, "repeat_last_n": s.repeat_last_n,
                               "presence_penalty": s.presence_penalty, "frequency_penalty": s.frequency_penalty}
    if not req.open_output:
        options["num_predict"] = req.max_tokens
    if s.seed is not None:
        options["seed"] = s.seed
    if req.stop:
        options["stop"] = list(req.stop)
    body: dict[str, Any] = {"model": model, "stream": True, "options": options}
    if req.think is not None:
        body["think"] = req.think
    if req.output_format is not None:
        body["format"] = req.output_format
    if req.messages is not None:
        body["messages"] = messages(req.messages)
        if req.tools:
            body["tools"] = req.tools  # Ollama has no tool_choice: the model decides
    else:
        body.update(prompt=req.prompt, raw=True)
    return body


async def generate(client: httpx.AsyncClient, backend: str, model: str,
                   req: GenerationRequest) -> AsyncIterator[Event]:
    clock = Clock()
    chat = req.messages is not None
    resp = await open_stream(client, backend, "/api/chat" if chat else "/api/generate", payload(model, req))
    n, final, calls = 0, None, []
    stream = lines(resp, backend)
    try:
        async for line in stream:
            if not line.strip():
                continue
            try:
                chunk = json.loads(line)
            except ValueError:
                raise garbage(backend) from None
            if not isinstance(chunk, dict):
                raise garbage(backend)
            if chunk.get("error"):
                raise BackendFailed(f'backend "{backend}" failed: {str(chunk["error"])[:200]}')
            if chunk.get("status") in ("queued", "loading") and not chunk.get("done"):
                position = chunk.get("queue_position")
                yield StatusEvent(chunk["status"], position if isinstance(position, int) else None)
                continue
            message = chunk.get("message") if isinstance(chunk.get("message"), dict) else {}
            thinking = message.get("thinking") if chat else chunk.get("thinking")
            if req.think and isinstance(thinking, str) and thinking:
                clock.token()
                yield ThinkingChunk(thinking)
            if req.tools and message.get("tool_calls"):
                if not isinstance(message["tool_calls"], list):
                    raise garbage(backend)
                for c in message["tool_calls"]:
                    if not isinstance(c, dict) or not isinstance(c.get("function"), dict):
                        raise garbage(backend)
                    calls.append(tool_call(c["function"].get("name"), c["function"].get("arguments"), backend, c.get("id")))
            text = message.get("content") if chat else chunk.get("response")
            if isinstance(text, str) and text:
                clock.token()
                n += 1
                yield TextChunk(text, n)
            if chunk.get("done"):
                final = chunk
                await finish_reading(stream)  # the connection goes back to the pool
                break
    finally:
        await resp.aclose()
    if final is None:
        raise cut_off(backend)
    if calls:
        yield ToolCalls(calls)
    stats: GenerationStats = clock.stats(finish_reason(final.get("done_reason")), as_int(final.get("prompt_eval_count")),
                                         as_int(final.get("eval_count")) or n)
    if as_int(final.get("eval_duration")):  # the engine's own timings when it reports them
        stats.prompt_eval_ns, stats.eval_ns = as_int(final.get("prompt_eval_duration")), final["eval_duration"]
    yield stats


async def embed(client: httpx.AsyncClient, backend: str, model: str, req: EmbeddingRequest) -> EmbeddingResult:
    clock = Clock()
    data = await post_json(client, backend, "/api/embed", {"model": model, "input": list(req.inputs),
                                                           "truncate": req.truncate})
    try:
        vectors = [[float(x) for x in row] for row in data["embeddings"]]
    except (KeyError, TypeError, ValueError):
        raise garbage(backend) from None
    if len(vectors) != len(req.inputs):
        raise garbage(backend)
    return EmbeddingResult(embeddings=vectors, prompt_tokens=as_int(data.get("prompt_eval_count")),
                           total_ns=clock.stats("stop", 0, 0).eval_ns)
