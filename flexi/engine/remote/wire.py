"""What both remote dialects share: opening a streamed call, turning HTTP failures into clear errors."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from flexi.engine.types import EngineError, FinishReason, GenerationStats, ServerBusy

#: How much of a backend's error text reaches the client (it may be long or an HTML page).
_DETAIL_CHARS = 200


class BackendFailed(EngineError):
    """A remote engine did not answer as it should. `retry`: nothing useful came back, so another backend
    serving the same model may take the request (the caller still decides: never after a first token).
    `reason`: what it says about the backend's health (connect, timeout, http_5xx, garbage, cut, error;
    the circuit breaker counts it), None when the backend refused this request only (4xx)."""

    def __init__(self, message: str, status: int = 502, code: str = "backend_error", retry: bool = True,
                 reason: str | None = "error") -> None:
        super().__init__(message, status=status, code=code)
        self.retry = retry
        self.reason = reason


class BackendsDown(ServerBusy):
    """Every backend of a model has its circuit open: answered at once, nothing is sent or queued.
    `retry_after`: when the first of them takes a trial request again. The access gate localizes it."""

    def __init__(self, model: str, retry_after: int) -> None:
        super().__init__(retry_after, f"every backend serving {model} is unavailable at the moment; "
                                      f"try again in {retry_after} s")
        self.code = "backend_unavailable"
        self.model = model


def _detail(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_DETAIL_CHARS]
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        err = err.get("message")
    return str(err if err is not None else text)[:_DETAIL_CHARS]


def status_failure(backend: str, status: int, body: bytes) -> EngineError:
    """The error a client sees for a backend's HTTP error status."""
    detail = _detail(body)
    if status in (400, 413, 422):  # the request itself: another backend would refuse it too
        return EngineError(f'backend "{backend}" refused the request: {detail}', status=400, code="invalid_request")
    if status in (401, 403):
        return BackendFailed(f'backend "{backend}" refused Flexi\'s credentials (HTTP {status}); tell the administrator',
                             reason=None)
    if status == 404:
        return BackendFailed(f'backend "{backend}" does not serve this model (HTTP 404): {detail}', reason=None)
    if status in (408, 429, 503):
        return BackendFailed(f'backend "{backend}" is busy (HTTP {status}); try again', status=503, code="backend_busy",
                             reason="http_5xx" if status >= 500 else None)
    return BackendFailed(f'backend "{backend}" failed (HTTP {status}): {detail}',
                         reason="http_5xx" if status >= 500 else None)


def transport_failure(backend: str, exc: httpx.HTTPError) -> BackendFailed:
    if isinstance(exc, httpx.TimeoutException):
        return BackendFailed(f'backend "{backend}" did not answer in time', status=504, code="backend_timeout",
                             reason="timeout")
    return BackendFailed(f'backend "{backend}" is unreachable ({type(exc).__name__}); try again later',
                         code="backend_unavailable", reason="connect")


def garbage(backend: str) -> BackendFailed:
    return BackendFailed(f'backend "{backend}" sent an answer Flexi cannot read', reason="garbage")


def cut_off(backend: str) -> BackendFailed:
    return BackendFailed(f'backend "{backend}" closed the stream before the answer was complete', reason="cut")


#: How long an idle connection to an engine is kept for reuse: below the 5 s after which llama-server (cpp-httplib)
#: and uvicorn close idle keep-alive connections, so Flexi rarely picks one the engine is just closing.
KEEPALIVE_SECONDS = 3.0
#: Failures of a request that got no answer at all on a reused connection: the engine closed it while idle
#: (a keep-alive race) before reading the request. Sent once more on a fresh connection, to the same engine.
_STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


async def _post(client: httpx.AsyncClient, path: str, payload: dict[str, Any], stream: bool) -> httpx.Response:
    """POST once more when the first attempt died without any answer on a connection the engine had closed;
    a second such failure (or any other) is the engine's."""
    try:
        return await client.send(client.build_request("POST", path, json=payload), stream=stream)
    except _STALE_CONNECTION:
        return await client.send(client.build_request("POST", path, json=payload), stream=stream)


async def open_stream(client: httpx.AsyncClient, backend: str, path: str, payload: dict[str, Any]) -> httpx.Response:
    """POST `payload` and return the streaming response once its status says it is an answer."""
    try:
        resp = await _post(client, path, payload, stream=True)
    except httpx.HTTPError as exc:
        raise transport_failure(backend, exc) from None
    if resp.status_code >= 400:
        try:
            body = await resp.aread()
        except httpx.HTTPError:
            body = b""
        finally:
            await resp.aclose()
        raise status_failure(backend, resp.status_code, body)
    return resp


async def post_json(client: httpx.AsyncClient, backend: str, path: str, payload: dict[str, Any]) -> Any:
    """A non-streamed call (embeddings): the parsed JSON answer, or a clear error."""
    try:
        resp = await _post(client, path, payload, stream=False)
    except httpx.HTTPError as exc:
        raise transport_failure(backend, exc) from None
    if resp.status_code >= 400:
        raise status_failure(backend, resp.status_code, resp.content)
    try:
        return resp.json()
    except ValueError:
        raise garbage(backend) from None


async def lines(resp: httpx.Response, backend: str) -> AsyncIterator[str]:
    """The response's lines; a connection lost midway is the backend's fault, said clearly."""
    try:
        async for line in resp.aiter_lines():
            yield line
    except httpx.HTTPError:
        raise cut_off(backend) from None


DRAIN_SECONDS = 1.0  # how long the end of a body may take after the engine's last event


async def finish_reading(stream: AsyncIterator[str], seconds: float = DRAIN_SECONDS) -> None:
    """Read what follows the engine's last event (the end of the chunked body) before the response is closed:
    only a response read to its end returns its connection to the pool, so the next request skips a new TCP
    (and TLS) handshake. An engine that keeps talking after its last event just loses that connection."""
    with contextlib.suppress(TimeoutError, BackendFailed):
        async with asyncio.timeout(seconds):
            async for _ in stream:
                pass


@dataclass
class Clock:
    """Times one remote completion in Ollama's units: time to the first token, then the rest."""

    start: int = field(default_factory=time.perf_counter_ns)
    first: int | None = None

    def token(self) -> None:
        if self.first is None:
            self.first = time.perf_counter_ns()

    def stats(self, finish: FinishReason, prompt_tokens: int, completion_tokens: int) -> GenerationStats:
        end = time.perf_counter_ns()
        first = self.first if self.first is not None else end
        return GenerationStats(finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                               prompt_eval_ns=first - self.start, eval_ns=end - first)


def finish_reason(value: Any) -> FinishReason:
    return "length" if value == "length" else "stop"


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def unusable_tool_call(backend: str) -> BackendFailed:
    """The model wrote a tool call that is not a name with a JSON object of arguments. That is this answer's
    content, which any user can provoke, not a sign the engine is sick: it fails this request only (no
    circuit-breaker count, no retry on another backend)."""
    return BackendFailed(f'the model on backend "{backend}" wrote a tool call Flexi cannot read (its arguments must '
                         "be a JSON object); try again or rephrase", retry=False, reason=None)


def tool_call(name: Any, arguments: Any, backend: str, call_id: Any = None) -> dict[str, Any]:
    """One engine tool call in Flexi's shape {"name", "arguments": dict, "id"?}; arguments may come as a JSON
    string (OpenAI) or an object (Ollama). Anything else fails this request (`unusable_tool_call`)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise unusable_tool_call(backend) from None
    if arguments is None:
        arguments = {}
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        raise unusable_tool_call(backend)
    call: dict[str, Any] = {"name": name, "arguments": arguments}
    if isinstance(call_id, str) and call_id:
        call["id"] = call_id
    return call


_IMAGE_TYPES = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
                (b"RIFF", "image/webp"))


def image_data_url(image: str) -> str:
    """An Ollama-style base64 image as the data URL OpenAI's `image_url` takes (the type from its first bytes)."""
    try:
        head = base64.b64decode(image[:16] + "=" * (-len(image[:16]) % 4), validate=False)
    except (binascii.Error, ValueError):
        head = b""
    kind = next((t for magic, t in _IMAGE_TYPES if head.startswith(magic)), "image/png")
    return f"data:{kind};base64,{image}"
