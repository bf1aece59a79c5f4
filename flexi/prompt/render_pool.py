"""Prompt rendering off the event loop, with a wall-clock limit.

Rendering a template is CPU work on untrusted input. On the event loop, even a
bounded render would stall every other client for its duration, so renders
run on a small dedicated thread pool (not the default executor, which other
work shares). The render budget's deadline makes a runaway render stop itself
inside the worker; the `await` here has a backstop a little beyond it for the
rare single C call that overruns, and tells a render that never got a worker
(all busy) apart from one that was too slow: the first is 503, the second 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from flexi.prompt.render_budget import render_timeout
from flexi.prompt.templates import TemplateError
from flexi.engine.types import ServerBusy, TooManyRequests

__all__ = ["RENDER_WORKERS", "render_off_loop", "render_turn"]

T = TypeVar("T")

#: Renders at once. Python threads share one interpreter lock, so more threads
#: would not render faster; they would only take more turns from the event loop.
RENDER_WORKERS = 2
#: How long a render may wait for a free worker, in multiples of the render timeout.
QUEUE_WAIT_FACTOR = 4

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=RENDER_WORKERS, thread_name_prefix="flexi-render")
    return _executor


async def render_off_loop(fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    """Run the render `fn(*args, **kwargs)` on a worker thread; the event loop stays free meanwhile."""
    timeout = render_timeout()
    started: list[float] = []

    def job() -> T:
        started.append(time.monotonic())
        return fn(*args, **kwargs)

    future = asyncio.get_running_loop().run_in_executor(_pool(), functools.partial(job))
    backstop = timeout * (1 + QUEUE_WAIT_FACTOR) + 1.0
    try:
        return await asyncio.wait_for(future, backstop)
    except asyncio.TimeoutError:
        if not started or time.monotonic() - started[0] < timeout:
            raise ServerBusy(retry_after=max(1, int(timeout)),
                             message="server busy rendering prompts, try again") from None
        raise TemplateError(f"the prompt template could not be rendered: it took longer than {timeout:g} s") from None


class _Turns:
    """Whose renders may use the pool: one render at a time per person, at most `limit` of theirs waiting.

    The pool has two workers for everybody; a person sending templates that run to their budget must not
    hold both and make everyone else's chat wait. Waiting in one's own line is cheap (a coroutine); only
    beyond the person's cap of requests in flight is it refused (429, like the scheduler's cap)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Semaphore] = {}
        self._counts: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def turn(self, holder: str, limit: int | None) -> AsyncIterator[None]:
        count = self._counts.get(holder, 0)
        if limit is not None and count >= limit:
            raise TooManyRequests(limit)
        self._counts[holder] = count + 1
        lock = self._locks.setdefault(holder, asyncio.Semaphore(1))
        try:
            async with lock:
                yield
        finally:
            self._counts[holder] -= 1
            if not self._counts[holder]:
                del self._counts[holder]
                self._locks.pop(holder, None)


_turns = _Turns()


def render_turn(holder: str, limit: int | None) -> contextlib.AbstractAsyncContextManager[None]:
    """Wait for `holder`'s turn at the render pool (TooManyRequests when `limit` of theirs are already in line)."""
    return _turns.turn(holder, limit)
