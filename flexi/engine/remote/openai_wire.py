"""The OpenAI-compatible dialect (OpenAI-style services, vLLM, llama.cpp's llama-server).

The backend's URL is its OpenAI base URL (the one the `openai` SDK takes, usually ending in /v1).
Every call streams (`stream_options.include_usage`, so the usage comes from the backend's own token
counts); non-streamed answers are collected above, like local ones."""

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
    finish_reason,
    garbage,
    lines,
    open_stream,
    post_json,
)
from flexi.engine.types import (
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GenerationRequest,
    GenerationStats,
    TextChunk,
)


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
        body["messages"] = req.messages
    else:
        body["prompt"] = req.prompt
    if req.stop:
        body["stop"] = list(req.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if kind in ("vllm", "llamacpp"):
        body.update(top_k=s.top_k, min_p=s.min_p)
        body["repetition_penalty" if kind == "vllm" else "repeat_penalty"] = s.repeat_penalty
    if isinstance(req.output_format, str):  # "json" (the service refused any other text)
        body["response_format"] = {"type": "json_object"}
    elif isinstance(req.output_format, dict):
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": req.output_format, "strict": True}}
    return body


async def generate(client: httpx.AsyncClient, backend: str, model: str, req: GenerationRequest,
                   kind: str) -> AsyncIterator[TextChunk | GenerationStats]:
    clock = Clock()
    path = "chat/completions" if req.messages is not None else "completions"
    resp = await open_stream(client, backend, path, payload(model, req, kind))
    n, finish, usage, done = 0, None, {}, False
    try:
        async for line in lines(resp, backend):
            if not line.startswith("data:"):
                continue  # SSE comments (keep-alives, Flexi's queue status) and blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
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
