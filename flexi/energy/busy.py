"""Busy time per model and course: when requests run at an engine.

The generation service reports each request's start (its first event from the engine: a runner slot took
it, or a remote engine answered) and end (its stream closed, however it ended); queue time is not busy
time. The sampler asks, for each interval between two power samples, how many seconds each (model,
course) was busy, how much of the interval anything was busy (the union), and the peak number of
requests running at once. Calls come from the event loop and, for the estimate's fallback, from the
sampler's thread, so a lock guards the few dictionary operations.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from flexi.engine.types import StatusEvent

Key = tuple[str, int]  # (model, course id; 0 = no course)


@dataclass(frozen=True)
class Busy:
    """What ran in one interval."""

    seconds: dict[Key, float]  # busy seconds per (model, course); overlapping requests add up
    union: float  # seconds in which at least one request ran
    peak: int  # most requests running at once


class BusyTracker:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._ids = itertools.count(1)
        self._running: dict[int, tuple[Key, float]] = {}
        self._done: list[tuple[Key, float, float]] = []
        self._lock = threading.Lock()

    def begin(self, model: str, course_id: int | None, at: float | None = None) -> int:
        with self._lock:
            token = next(self._ids)
            self._running[token] = ((model, course_id or 0), self.clock() if at is None else at)
            return token

    def end(self, token: int, at: float | None = None) -> None:
        with self._lock:
            started = self._running.pop(token, None)
            if started is not None:
                self._done.append((started[0], started[1], self.clock() if at is None else at))

    @property
    def running(self) -> int:
        return len(self._running)

    def busy(self, start: float, end: float) -> Busy:
        """What ran within [start, end] (requests still running count up to `end`)."""
        with self._lock:
            spans = [(k, max(s, start), min(e, end)) for k, s, e in self._done] + \
                    [(k, max(s, start), end) for k, s in self._running.values()]
        spans = [(k, s, e) for k, s, e in spans if e > s]
        seconds: dict[Key, float] = {}
        for key, s, e in spans:
            seconds[key] = seconds.get(key, 0.0) + (e - s)
        union, reach = 0.0, start
        for _, s, e in sorted(spans, key=lambda x: x[1]):
            if e > reach:
                union += e - max(s, reach)
                reach = e
        edges = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans], key=lambda x: (x[0], x[1]))
        peak = now = 0
        for _, step in edges:  # ends before starts at the same instant: back-to-back requests are not concurrent
            now += step
            peak = max(peak, now)
        return Busy(seconds, union, peak)

    def forget_before(self, moment: float) -> None:
        """Drop finished requests that ended before `moment` (the sampler has accounted for them)."""
        with self._lock:
            self._done = [d for d in self._done if d[2] > moment]

    async def watch(self, events: AsyncIterator[Any], model: str, course_id: int | None) -> AsyncIterator[Any]:
        """Pass a request's events through, busy from its first engine event (status events while it waits
        in the queue or for a model to load do not count) until the stream ends."""
        token: int | None = None
        try:
            async for event in events:
                if token is None and not isinstance(event, StatusEvent):
                    token = self.begin(model, course_id)
                yield event
        finally:
            if token is not None:
                self.end(token)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
