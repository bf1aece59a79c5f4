"""Small wire-format helpers shared by the routers: timestamps, NDJSON/SSE framing, first-event priming."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any, TypeVar

T = TypeVar("T")


def rfc3339_nano(ns: int | None = None) -> str:
    """Go's RFC 3339 with nanoseconds, as Ollama writes `created_at`."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def rfc3339(dt: datetime | None) -> str:
    if dt is None:
        return "0001-01-01T00:00:00Z"  # Go's zero time: Ollama's "never expires" in /api/ps is far future, not this
    return dt.isoformat()


def ndjson(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def sse(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + data.encode() + b"\n\n"


async def primed(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Start a stream and wait for its first item, so errors before any output
    (unknown model, load failure, prompt too long) become a proper HTTP status
    instead of an error line inside a 200 stream."""
    first = await stream.__anext__()

    async def rest() -> AsyncIterator[T]:
        try:
            yield first
            async for item in stream:
                yield item
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    return rest()
