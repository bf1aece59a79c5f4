"""One streaming chat request in either API dialect, measured into a `RequestRecord`.

Works against any server speaking Ollama's `/api/chat` (NDJSON stream) or OpenAI's
`/v1/chat/completions` (server-sent events): Flexi, Ollama, llama.cpp's
llama-server, vLLM. Failures are results, never exceptions: every call returns a
record whose `status` says what happened.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

Api = Literal["ollama", "openai"]
APIS: tuple[str, ...] = ("ollama", "openai")

# Outcomes of one request.
OK = "ok"
HTTP_ERROR = "http_error"  # the server answered >= 400 (code in `http_status`)
STREAM_ERROR = "stream_error"  # an error object inside a 200 stream, or an unreadable stream
TIMEOUT = "timeout"  # no complete answer within --timeout seconds
CONNECTION_ERROR = "connection_error"  # refused, reset, DNS, protocol error


@dataclass
class GenerationParams:
    """What every request of a run asks for."""

    api: Api
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    ignore_eos: bool = False


@dataclass
class RequestRecord:
    """The measurement of one request; times in seconds."""

    status: str = OK
    http_status: int | None = None
    error: str | None = None
    latency_s: float = 0.0  # start of the request → last byte
    ttft_s: float | None = None  # start → first non-empty content
    output_tokens: int = 0
    tokens_from: str = "chunks"  # "usage" (server's count) or "chunks" (content chunks counted)
    started_s: float = 0.0  # monotonic start, relative to the run (filled by the caller)
    # Where the request belongs in the run (filled by the caller).
    prompt_index: int = 0
    level: int = 0
    repetition: int = 0
    slot: int = 0

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def endpoint(api: Api) -> str:
    return "/api/chat" if api == "ollama" else "/v1/chat/completions"


def probe_path(api: Api) -> str:
    """A cheap GET that any server of that dialect answers (any HTTP status proves it is up)."""
    return "/api/version" if api == "ollama" else "/v1/models"


def request_body(params: GenerationParams, prompt: str) -> dict[str, Any]:
    """The JSON body of a streaming chat request with one user message."""
    messages = [{"role": "user", "content": prompt}]
    if params.api == "ollama":
        options: dict[str, Any] = {}
        if params.max_tokens is not None:
            options["num_predict"] = params.max_tokens
        if params.temperature is not None:
            options["temperature"] = params.temperature
        if params.ignore_eos:
            options["ignore_eos"] = True
        body: dict[str, Any] = {"model": params.model, "messages": messages, "stream": True}
        if options:
            body["options"] = options
        return body
    body = {"model": params.model, "messages": messages, "stream": True,
            "stream_options": {"include_usage": True}}
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.ignore_eos:
        body["ignore_eos"] = True  # vLLM / llama.cpp extension, also understood by Flexi
    return body


def error_text(raw: bytes, limit: int = 500) -> str:
    """The `error` message of an error body (Ollama or OpenAI shape), else the raw text."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body.get("detail"))
        if isinstance(err, dict):
            err = err.get("message")
        if isinstance(err, str) and err:
            return err[:limit]
    return text[:limit]


class _StreamFailure(Exception):
    """An error reported inside a stream."""


class _Meter:
    """Collects TTFT, chunk count and the server's token count while a stream is read."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.ttft: float | None = None
        self.chunks = 0
        self.usage_tokens: int | None = None

    def content(self, text: Any) -> None:
        if isinstance(text, str) and text:
            if self.ttft is None:
                self.ttft = time.perf_counter() - self.start
            self.chunks += 1


def _ollama_line(line: str, meter: _Meter) -> None:
    if not line.strip():
        return
    try:
        obj = json.loads(line)
    except ValueError:
        raise _StreamFailure(f"invalid NDJSON line: {line[:200]}") from None
    if not isinstance(obj, dict):
        return
    if obj.get("error"):
        raise _StreamFailure(error_text(json.dumps(obj).encode()))
    msg = obj.get("message") or {}
    if isinstance(msg, dict):
        meter.content(msg.get("content") or msg.get("thinking"))
    else:
        meter.content(obj.get("response"))  # /api/generate-style lines
    if obj.get("done") and isinstance(obj.get("eval_count"), int):
        meter.usage_tokens = obj["eval_count"]


def _openai_line(line: str, meter: _Meter) -> bool:
    """Handle one SSE line; True at `data: [DONE]`."""
    if not line.startswith("data:"):
        return False  # blank separators, comments, `event:` lines
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        obj = json.loads(data)
    except ValueError:
        raise _StreamFailure(f"invalid SSE data: {data[:200]}") from None
    if not isinstance(obj, dict):
        return False
    if obj.get("error"):
        raise _StreamFailure(error_text(json.dumps(obj).encode()))
    for choice in obj.get("choices") or []:
        delta = choice.get("delta") or {}
        meter.content(delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"))
    usage = obj.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        meter.usage_tokens = usage["completion_tokens"]
    return False


async def stream_chat(client: httpx.AsyncClient, base_url: str, params: GenerationParams, prompt: str,
                      timeout: float, headers: dict[str, str] | None = None) -> RequestRecord:
    """Send one streaming chat request and measure it; never raises for server or network failures."""
    record = RequestRecord()
    url = base_url.rstrip("/") + endpoint(params.api)
    body = request_body(params, prompt)
    start = time.perf_counter()
    meter = _Meter(start)
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body, headers=headers) as response:
                record.http_status = response.status_code
                if response.status_code >= 400:
                    record.status = HTTP_ERROR
                    record.error = error_text(await response.aread()) or response.reason_phrase
                else:
                    async for line in response.aiter_lines():
                        if params.api == "ollama":
                            _ollama_line(line, meter)
                        elif _openai_line(line, meter):
                            break
    except (TimeoutError, httpx.TimeoutException):
        record.status = TIMEOUT
        record.error = f"no complete answer within {timeout:g} s"
    except _StreamFailure as exc:
        record.status = STREAM_ERROR
        record.error = str(exc)
    except httpx.TransportError as exc:
        record.status = CONNECTION_ERROR
        record.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except httpx.HTTPError as exc:  # e.g. an undecodable body
        record.status = STREAM_ERROR
        record.error = f"{type(exc).__name__}: {exc}"
    record.latency_s = time.perf_counter() - start
    record.ttft_s = meter.ttft
    if meter.usage_tokens is not None:
        record.output_tokens, record.tokens_from = meter.usage_tokens, "usage"
    else:
        record.output_tokens, record.tokens_from = meter.chunks, "chunks"
    return record
