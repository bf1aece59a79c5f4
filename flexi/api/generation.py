"""Dialect-neutral request building and output post-processing.

Both routers call these, so validation, defaults and capability checks are
identical whichever API a client speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from flexi.api.options import ModelOptions, max_tokens_of, merged, sampling_of
from flexi.prompt.rendering import check_capabilities, render_generate, render_messages
from flexi.durations import DurationError, parse_duration
from flexi.prompt.grammar import grammar_for_format
from flexi.prompt.render_pool import render_off_loop, render_turn
from flexi.prompt.toolcalls import parse_tool_calls
from flexi.access.principal import principal_of
from flexi.http.app_state import access_of, state_of
from flexi.api.identity import client_identity
from flexi.access.policy import allowed_context
from flexi.engine.types import (
    BadRequest,
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    GenerationStats,
    ModelNotFound,
    StatusEvent,
    TextChunk,
    TooManyRequests,
)
from flexi.store.store import ModelRecord, ModelStore


def keep_alive_seconds(value: Any) -> float | None:
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise BadRequest(str(exc), param="keep_alive") from None


def require_model(store: ModelStore, name: str | None, request: Request | None = None) -> ModelRecord:
    """The model `name`; with `request`, only if its caller may use it. A model the
    caller may not use is reported exactly like a missing one (no enumeration)."""
    if not name:
        raise BadRequest("model is required", param="model")
    record = store.get(name)
    if request is not None and not access_of(request).gate.visible(principal_of(request), record.name):
        raise ModelNotFound(name)
    return record


def visible_records(request: Request, records: list[ModelRecord]) -> list[ModelRecord]:
    """The models the caller may use (model lists show nothing else)."""
    gate, principal = access_of(request).gate, principal_of(request)
    return [r for r in records if gate.visible(principal, r.name)]


def _bounded_context(request: Request, record: ModelRecord, requested: int | None) -> int | None:
    """The request's num_ctx within the caller's caps (issue 11: no reloads at a larger context for non-admins)."""
    state = state_of(request)
    principal = principal_of(request)
    return allowed_context(principal, requested, state.access.gate.limits(principal, record.name),
                           state.manager.context_ceiling(record))


def check_prompt_size(prompt_bytes: int, prefix_tokens: int, context: int, bytes_per_token: int,
                      param: str = "prompt") -> None:
    """Refuse, before queueing, billing or tokenising, a prompt that cannot fit `context` tokens with any
    tokenizer; the runner checks the exact token count for everything that passes."""
    room = context - prefix_tokens
    if room <= 0 or prompt_bytes > room * bytes_per_token:
        raise BadRequest(f"the prompt is too long: {prompt_bytes} bytes (and {prefix_tokens} context tokens) cannot fit "
                         f"the context of {context} tokens this request may use; shorten the prompt", param=param)


def check_message_count(request: Request, count: int) -> None:
    limit = access_of(request).gate.settings.max_messages
    if count > limit:
        raise BadRequest(f"too many messages: {count}, at most {limit} are allowed per request (FLEXI_MAX_MESSAGES)",
                         param="messages")


async def admit(request: Request, record: ModelRecord, options: ModelOptions | None, body: BaseModel) -> None:
    """Policy and rate admission, and a check that the token quota has room for what the request
    brings (its parsed body, images aside), before the prompt is rendered or tokenized: both
    cost CPU that a caller over their quota must not get. The tokens are reserved once the
    prompt is known (in the gate's stream)."""
    state = state_of(request)
    num_ctx = merged(record.parameters, options).num_ctx
    brought = len(body.model_dump_json(exclude=_NOT_PROMPT, exclude_none=True).encode("utf-8"))
    await state.access.gate.admit(request, record.name, prompt_bound=brought, num_ctx=num_ctx,
                                  context_length=state.manager.context_for(record, num_ctx))


_NOT_PROMPT: Any = {"images": True, "messages": {"__all__": {"images"}}}  # pixels are not prompt tokens


def start_generation(request: Request, record: ModelRecord, req: GenerationRequest) -> AsyncIterator[Any]:
    """The event stream for `req`, through the access gate (policy caps, quota, usage record)."""
    state = state_of(request)
    req.num_ctx = _bounded_context(request, record, req.num_ctx)
    context = state.manager.context_for(record, req.num_ctx)
    cap = state.access.gate.limits(principal_of(request), record.name).max_context
    check_prompt_size(len(req.prompt.encode("utf-8")), len(req.prefix_tokens), min(context, cap or context),
                      state.access.gate.settings.max_prompt_bytes_per_token)
    return state.access.gate.generate(request, req, state.manager.generate, context)


async def run_embedding(request: Request, req: EmbeddingRequest) -> EmbeddingResult:
    """Embed through the access gate (policy, quota on input tokens, usage record)."""
    state = state_of(request)
    limit = state.access.gate.settings.max_embedding_inputs
    if len(req.inputs) > limit:
        raise BadRequest(f"too many inputs: {len(req.inputs)}, at most {limit} are allowed per request "
                         "(FLEXI_MAX_EMBEDDING_INPUTS)", param="input")
    record = state.store.get(req.model)
    req.num_ctx = _bounded_context(request, record, req.num_ctx)  # the caller's cap, if they named a num_ctx
    if not req.truncate:  # truncated inputs are cut to the context by the runner; the body size bounds them
        # an unnamed num_ctx keeps the model's configured context (a capped caller must not make it load
        # smaller for everyone); the caller may still use only their cap of it
        cap = state.access.gate.limits(principal_of(request), record.name).max_context
        context = state.manager.context_for(record, req.num_ctx)
        context = context if cap is None else min(context, cap)
        for text in req.inputs:
            check_prompt_size(len(text.encode("utf-8")), 0, context, state.access.gate.settings.max_prompt_bytes_per_token, "input")
    req.keep_alive = state.access.gate.keep_alive_for(principal_of(request), req.keep_alive)
    req.max_concurrent = state.access.gate.max_concurrent_for(principal_of(request))
    return await state.access.gate.embed(request, req.model, req.inputs, lambda: state.manager.embed(req),
                                         lambda result: result.prompt_tokens)


def build_request(record: ModelRecord, prompt: str, options: ModelOptions | None, *, fmt: Any = None,
                  format_param: str = "format", keep_alive: Any = None, prefix_tokens: list[int] | None = None,
                  return_tokens: bool = False, extra_stop: list[str] | None = None, user: str = "anonymous",
                  priority: int = 0) -> GenerationRequest:
    opts = merged(record.parameters, options)
    stop = list(opts.stop or []) + list(extra_stop or [])
    return GenerationRequest(
        model=record.name,
        prompt=prompt,
        prefix_tokens=list(prefix_tokens or []),
        max_tokens=max_tokens_of(opts),
        stop=stop,
        sampling=sampling_of(opts),
        grammar=grammar_for_format(fmt, param=format_param),
        ignore_eos=bool(opts.ignore_eos),
        num_ctx=opts.num_ctx,
        keep_alive=keep_alive_seconds(keep_alive),
        return_tokens=return_tokens,
        user=user,
        priority=priority,
    )


async def chat_prompt(record: ModelRecord, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                      think: Any = None, has_images: bool = False, request: Request | None = None) -> str:
    """The chat's prompt, rendered off the event loop (templates are untrusted CPU work); with `request`,
    in its caller's turn at the render pool."""
    check_capabilities(record, tools=tools, think=think, images=has_images)
    for i, m in enumerate(messages):
        if not isinstance(m.get("role"), str) or not m["role"]:
            raise BadRequest(f"messages[{i}].role is required", param=f"messages.{i}.role")
    async with _render_turn(request, record):
        return await render_off_loop(render_messages, record, messages, tools=tools,
                                     think=bool(think) if think is not None else None)


async def generate_prompt(record: ModelRecord, prompt: str, *, system: str | None = None, template: str | None = None,
                          suffix: str | None = None, raw: bool = False, think: Any = None,
                          has_images: bool = False, request: Request | None = None) -> str:
    """The /api/generate prompt, rendered off the event loop (a raw prompt needs no rendering)."""
    check_capabilities(record, think=think, images=has_images, suffix=suffix)
    if raw:
        return prompt
    async with _render_turn(request, record):
        return await render_off_loop(render_generate, record, prompt, system=system, template=template, suffix=suffix,
                                     think=bool(think) if think is not None else None)


@contextlib.asynccontextmanager
async def _render_turn(request: Request | None, record: ModelRecord) -> AsyncIterator[None]:
    """One render at a time per person (the fair-queue identity, without an end-user suffix), at most their
    per-model request cap of them in line; beyond it the gate's localized 429."""
    if request is None:
        yield
        return
    principal, gate = principal_of(request), access_of(request).gate
    holder = client_identity(request).split("/", 1)[0]
    try:
        async with render_turn(holder, gate.max_concurrent_for(principal)):
            yield  # the body only renders: a TooManyRequests here can only come from the turn
    except TooManyRequests as exc:
        raise gate.too_many(request, principal, exc, record.name) from None


@dataclass
class Completion:
    """A finished (non-streamed) generation."""

    text: str
    stats: GenerationStats
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class ClientDisconnected(Exception):
    """The client went away before a non-streamed answer was ready."""


async def collect_while_connected(request: Request, events: AsyncIterator[TextChunk | GenerationStats | StatusEvent]) -> Completion:
    """Collect a whole answer, but cancel generation as soon as the client disconnects.

    Uvicorn does not cancel a handler when its client leaves; after the body is read,
    the next ASGI receive() only returns once the client disconnects, so we race the two.
    """
    work = asyncio.ensure_future(collect(events))
    watch = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        raise ClientDisconnected()
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def collect(events: AsyncIterator[TextChunk | GenerationStats | StatusEvent]) -> Completion:
    parts: list[str] = []
    stats: GenerationStats | None = None
    async for ev in events:
        if isinstance(ev, TextChunk):
            parts.append(ev.text)
        elif isinstance(ev, GenerationStats):
            stats = ev
    assert stats is not None
    return Completion(text="".join(parts), stats=stats)


def split_tool_calls(text: str, tools: list[dict[str, Any]] | None) -> tuple[str, list[dict[str, Any]]]:
    if not tools:
        return text, []
    names = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict)}
    return parse_tool_calls(text, {n for n in names if n})


def truncate_embedding(vec: list[float], dimensions: int | None) -> list[float]:
    """Keep the first `dimensions` values and re-normalise (both dialects' `dimensions` field)."""
    if not dimensions or dimensions >= len(vec):
        return vec
    cut = vec[:dimensions]
    norm = math.sqrt(sum(v * v for v in cut)) or 1.0
    return [v / norm for v in cut]


_THINK = re.compile(r"^\s*<think>(.*?)(?:</think>|$)(.*)$", re.S)


def split_thinking(text: str) -> tuple[str, str]:
    """Separate a leading <think>…</think> block (reasoning models) from the answer."""
    m = _THINK.match(text)
    if not m:
        return "", text
    return m.group(1).strip(), m.group(2).lstrip()
