"""Small wire-format helpers shared by the routers: timestamps, NDJSON/SSE framing, first-event priming."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any, TypeVar

from flexi.engine.types import EngineError

T = TypeVar("T")
log = logging.getLogger("flexi.api")


def stream_error(exc: Exception) -> EngineError:
    """What a stream that already answered 200 tells its client when it fails: the error itself when it is
    one a person should read, else a generic one (logged here with its traceback, never sent). Without
    this an unexpected exception would cut the response mid-body, which clients report as a broken
    connection instead of an error."""
    if isinstance(exc, EngineError):
        return exc
    log.error("a streamed answer failed unexpectedly", exc_info=exc)
    return EngineError("the answer broke off because of an internal error; please retry", status=500,
                       code="internal_error")


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
