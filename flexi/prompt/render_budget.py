"""One render's work budget, shared by the Jinja and the Go template engines.

Templates are untrusted input (request `template` fields, GGUF chat templates,
Modelfiles). A sandbox stops code execution but not a template that loops for
hours or asks Python for a gigabyte in one call. Every render therefore runs
with a `RenderBudget`: a step counter (loop iterations, calls, filters), a
wall-clock deadline checked on every step, and caps that are checked *before*
an operation allocates (string widths, integer sizes, result lengths).

The budget lives in a context variable so deeply nested helpers (Jinja's
sandbox hooks, filters) reach it without threading it through every call.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "MAX_INT_BITS",
    "MAX_OUTPUT_CHARS",
    "MAX_STEPS",
    "MAX_VALUE_CHARS",
    "MAX_WIDTH",
    "RenderBudget",
    "RenderLimit",
    "budget",
    "check_int_bits",
    "check_size",
    "check_width",
    "current",
    "render_timeout",
    "set_render_timeout",
    "tick",
]

MAX_STEPS = 1_000_000  # loop iterations + calls + filters per render; real chat templates need a few thousand
MAX_OUTPUT_CHARS = 16 * 1024 * 1024  # a prompt larger than this is never legitimate
MAX_VALUE_CHARS = MAX_OUTPUT_CHARS  # any one string/list a render builds (concatenation, join, replace, ...)
MAX_WIDTH = 10_000  # padding width / precision in ljust, %-formats, {:N}, printf; chat templates use 2-digit ones
MAX_INT_BITS = 16_384  # integers a template computes (`999**999` is ~10,000 bits; str() of more fails anyway)
YIELD_MASK = 255  # a long render gives up the interpreter lock every 256 steps ...
YIELD_AFTER = 0.002  # ... once it has run this long (seconds); short renders never pay for it
DEFAULT_TIMEOUT = 2.0  # seconds of wall clock per render (FLEXI_TEMPLATE_TIMEOUT)

_timeout = DEFAULT_TIMEOUT


def render_timeout() -> float:
    """Seconds one render may take (the server sets it from `FLEXI_TEMPLATE_TIMEOUT`)."""
    return _timeout


def set_render_timeout(seconds: float) -> None:
    global _timeout
    _timeout = float(seconds)


class RenderLimit(Exception):
    """A template hit a budget; the engines turn this into a 400 with `str(exc)` as the reason."""


class RenderBudget:
    """Steps and a deadline for one render. Not thread-safe: one render, one thread."""

    __slots__ = ("deadline", "steps_left", "range_items_left", "sizes", "timeout", "yield_after")

    def __init__(self, steps: int = MAX_STEPS, timeout: float | None = None) -> None:
        self.timeout = render_timeout() if timeout is None else timeout
        now = time.monotonic()
        self.deadline = now + self.timeout
        self.yield_after = now + YIELD_AFTER
        self.steps_left = steps
        self.range_items_left = steps  # `range()` materialises lists (e.g. `range(n)|list`) before any step
        self.sizes: dict[int, tuple[Any, int]] = {}  # id -> (container, printed size): walked once per render

    def tick(self, n: int = 1) -> None:
        """Count `n` units of work; stop the render when the steps or the time are used up."""
        self.steps_left -= n
        if self.steps_left < 0:
            raise RenderLimit("the template does too much work (step budget exhausted)")
        now = time.monotonic()
        if now > self.deadline:
            raise RenderLimit(f"the template took longer than {self.timeout:g} s to render")
        if not self.steps_left & YIELD_MASK and now > self.yield_after:
            # A long render hands the interpreter lock over now and then: otherwise the event loop thread
            # waits a whole switch interval (5 ms) for it at every await, and other clients wait with it.
            time.sleep(0)


_current: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("flexi_render_budget", default=None)


def current() -> RenderBudget | None:
    return _current.get()


@contextmanager
def budget(steps: int = MAX_STEPS, timeout: float | None = None) -> Iterator[RenderBudget]:
    """Run a render under a budget; a nested render (Go turns, re-entry) shares the outer one."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    b = RenderBudget(steps, timeout)
    token = _current.set(b)
    try:
        yield b
    finally:
        _current.reset(token)


def tick(n: int = 1) -> None:
    """Count work against the active budget (no-op outside a render, e.g. at compile-time folding)."""
    b = _current.get()
    if b is not None:
        b.tick(n)


def check_width(width: Any, what: str) -> None:
    """Refuse a padding width / precision that would allocate more than `MAX_WIDTH` characters."""
    if isinstance(width, int) and width > MAX_WIDTH:
        raise RenderLimit(f"{what}: width {width} is larger than the limit of {MAX_WIDTH}")


def check_size(n: int, what: str) -> None:
    """Refuse a result of `n` characters/items before it is built."""
    if n > MAX_VALUE_CHARS:
        raise RenderLimit(f"{what} would be too large ({n} characters or items; the limit is {MAX_VALUE_CHARS})")


def check_int_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise RenderLimit(f"{what}: the result would be a {bits}-bit integer (the limit is {MAX_INT_BITS} bits)")
