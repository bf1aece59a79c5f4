"""Dialect-neutral handling of a generation's output: collecting a whole answer (and cancelling it
when the client leaves), tool calls, thinking, embedding truncation. Both routers use these, so a
non-streamed answer is assembled the same way whichever API a client speaks."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from flexi.engine.types import (
    GenerationStats,
    PromptLogprobs,
    StatusEvent,
    TextChunk,
    ThinkingChunk,
    TokenLogprob,
    ToolCalls,
)
from flexi.prompt.toolcalls import parse_tool_calls


@dataclass
class Completion:
    """A finished (non-streamed) generation."""

    text: str
    stats: GenerationStats
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # those the engine returned as data
    thinking: str = ""  # reasoning the engine returned apart from the text
    logprobs: list[TokenLogprob] | None = None  # of the generated tokens, when asked
    prompt_logprobs: list[TokenLogprob] | None = None  # the prompt scored, when asked


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
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    stats: GenerationStats | None = None
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None
    async for ev in events:
        if isinstance(ev, TextChunk):
            parts.append(ev.text)
            if ev.logprobs is not None:
                logprobs = [] if logprobs is None else logprobs
                logprobs.extend(ev.logprobs)
        elif isinstance(ev, ThinkingChunk):
            thinking.append(ev.text)
        elif isinstance(ev, ToolCalls):
            calls.extend(ev.calls)
        elif isinstance(ev, PromptLogprobs):
            prompt_logprobs = ev.logprobs
        elif isinstance(ev, GenerationStats):
            stats = ev
    assert stats is not None
    return Completion(text="".join(parts), stats=stats, tool_calls=calls, thinking="".join(thinking),
                      logprobs=logprobs, prompt_logprobs=prompt_logprobs)


def answer_tool_calls(done: Completion, tools: list[dict[str, Any]] | None) -> tuple[str, list[dict[str, Any]]]:
    """(content, tool calls) of a finished answer: the engine's own calls (remote engines), else those the
    model wrote into its text (local models)."""
    if done.tool_calls:
        return done.text, done.tool_calls
    return split_tool_calls(done.text, tools)


def answer_thinking(done: Completion, text: str) -> tuple[str, str]:
    """(thinking, answer): the engine's separate reasoning, else a leading <think> block of the text."""
    if done.thinking:
        return done.thinking.strip(), text
    return split_thinking(text)


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
