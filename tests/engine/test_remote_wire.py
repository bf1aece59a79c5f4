"""Remote engines that misbehave: each fault gives that request a clear error (the wire clients of
flexi/engine/remote/, over httpx's mock transport, so hangs, resets and garbage are exact)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from flexi.engine.remote import ollama_wire, openai_wire
from flexi.engine.remote.wire import BackendFailed
from flexi.engine.types import (
    EngineError,
    GenerationRequest,
    GenerationStats,
    TextChunk,
)

CHAT = GenerationRequest(model="m", prompt="user: hi", max_tokens=3, messages=[{"role": "user", "content": "hi"}])


class Body(httpx.AsyncByteStream):
    """A response body sent piece by piece; an exception among the pieces breaks the connection there."""

    def __init__(self, pieces: list[bytes | Exception]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            if isinstance(piece, Exception):
                raise piece
            yield piece


def client(handler: Callable[[httpx.Request], httpx.Response], base: str = "http://engine") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=base)


def sse(*chunks: dict[str, Any] | str) -> list[bytes | Exception]:
    return [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n".encode() for c in chunks]


def ndjson(*chunks: dict[str, Any]) -> list[bytes | Exception]:
    return [(json.dumps(c) + "\n").encode() for c in chunks]


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [ev async for ev in events]


def test_openai_stream_uses_the_backends_usage() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.url.path == "/v1/chat/completions"
        return httpx.Response(200, stream=Body(sse({"choices": [{"delta": {"content": "Hel"}}]},
                                                   {"choices": [{"delta": {"content": "lo"}, "finish_reason": "length"}]},
                                                   {"choices": [], "usage": {"prompt_tokens": 17, "completion_tokens": 2}},
                                                   "[DONE]")))

    events = asyncio.run(collect(openai_wire.generate(client(handler, "http://engine/v1"), "e", "their-name", CHAT, "vllm")))
    assert [e.text for e in events if isinstance(e, TextChunk)] == ["Hel", "lo"]
    stats = events[-1]
    assert isinstance(stats, GenerationStats)
    assert (stats.prompt_tokens, stats.completion_tokens, stats.finish_reason) == (17, 2, "length")
    body = seen[0]
    assert body["model"] == "their-name" and body["messages"] == CHAT.messages and body["stream_options"]["include_usage"]
    assert body["repetition_penalty"] == CHAT.sampling.repeat_penalty and "user" not in body  # no identities leave


def test_plain_openai_gets_only_standard_fields() -> None:
    body = openai_wire.payload("m", CHAT, "openai")
    assert not {"top_k", "min_p", "repeat_penalty", "repetition_penalty", "grammar"} & set(body)


@pytest.mark.parametrize("pieces, message", [
    ([b"data: {not json\n\n"], "cannot read"),
    (sse({"choices": [{"delta": {"content": "Hi"}}]}), "closed the stream before the answer was complete"),
    (sse({"choices": [{"delta": {"content": "Hi"}}]}) + [httpx.ReadError("reset")], "closed the stream"),
    (sse({"error": {"message": "CUDA out of memory"}}), "CUDA out of memory"),
])
def test_openai_faults_are_clear(pieces: list[bytes | Exception], message: str) -> None:
    c = client(lambda request: httpx.Response(200, stream=Body(pieces)))
    with pytest.raises(BackendFailed, match=message) as exc:
        asyncio.run(collect(openai_wire.generate(c, "gpu1", "m", CHAT, "openai")))
    assert exc.value.status == 502 and 'backend "gpu1"' in exc.value.message


@pytest.mark.parametrize("status, code, retry", [(500, 502, True), (503, 503, True), (404, 502, True), (401, 502, True),
                                                  (400, 400, False)])
def test_http_errors_map_to_clear_statuses(status: int, code: int, retry: bool) -> None:
    c = client(lambda request: httpx.Response(status, json={"error": "no such thing"}))
    with pytest.raises(EngineError) as exc:
        asyncio.run(collect(ollama_wire.generate(c, "gpu1", "m", CHAT)))
    assert exc.value.status == code
    assert isinstance(exc.value, BackendFailed) == retry


def test_a_hanging_backend_times_out_with_504() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(BackendFailed, match="did not answer in time") as exc:
        asyncio.run(collect(ollama_wire.generate(client(hang), "gpu1", "m", CHAT)))
    assert exc.value.status == 504


def test_ollama_stream_status_lines_and_counts() -> None:
    c = client(lambda request: httpx.Response(200, stream=Body(ndjson(
        {"status": "queued", "queue_position": 2, "done": False},
        {"message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
         "prompt_eval_count": 9, "eval_count": 1, "prompt_eval_duration": 5, "eval_duration": 7}))))
    events = asyncio.run(collect(ollama_wire.generate(c, "b", "m", CHAT)))
    assert events[0].kind == "queued" and events[0].position == 2
    stats = events[-1]
    assert (stats.prompt_tokens, stats.completion_tokens, stats.prompt_eval_ns, stats.eval_ns) == (9, 1, 5, 7)


def test_output_formats_in_the_openai_dialect() -> None:
    import dataclasses

    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    assert openai_wire.payload("m", dataclasses.replace(CHAT, output_format="json"), "openai")["response_format"] == \
        {"type": "json_object"}
    fmt = openai_wire.payload("m", dataclasses.replace(CHAT, output_format=schema), "vllm")["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == schema
    assert "response_format" not in openai_wire.payload("m", CHAT, "openai")


class CountingEngine:
    """A real HTTP/1.1 engine on a loopback port that answers every request with `body` in chunked encoding
    (as vLLM, llama-server and Ollama stream) and counts the TCP connections it accepted."""

    def __init__(self, body: bytes, content_type: bytes) -> None:
        self.body, self.content_type, self.connections = body, content_type, 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                half = len(self.body) // 2
                chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (self.body[:half], self.body[half:]))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + self.content_type +
                             b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_a_finished_stream_gives_its_connection_back(dialect: str) -> None:
    """Requests after the first reuse the connection: the end of the body is read after the last event
    (closing a half-read response would cost every request a new TCP handshake)."""
    if dialect == "openai":
        events = [{"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]},
                  {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}]
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        engine = CountingEngine(body, b"text/event-stream")
    else:
        lines = [{"message": {"role": "assistant", "content": "Hi"}, "done": False},
                 {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                  "prompt_eval_count": 3, "eval_count": 1}]
        engine = CountingEngine(b"".join(json.dumps(x).encode() + b"\n" for x in lines), b"application/x-ndjson")

    async def run() -> list[list[object]]:
        server = await asyncio.start_server(engine.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        results = []
        async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1/" if dialect == "openai"
                                             else f"http://127.0.0.1:{port}") as http:
            for _ in range(3):
                if dialect == "openai":
                    events = openai_wire.generate(http, "b", "m", CHAT, "openai")
                else:
                    events = ollama_wire.generate(http, "b", "m", CHAT)
                results.append([e async for e in events])
        return results

    results = asyncio.run(run())
    assert all(isinstance(r[0], TextChunk) and r[0].text == "Hi" and isinstance(r[-1], GenerationStats) for r in results)
    assert engine.connections == 1


class ClosingEngine(CountingEngine):
    """Like `CountingEngine`, but the first connection is closed after reading its second request without any
    answer: what a keep-alive timeout in the engine does to a connection Flexi is just reusing."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections:
            return await super().handle(reader, writer)
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + self.content_type + b"\r\nContent-Length: %d\r\n\r\n"
                     % len(self.body) + self.body)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the reused connection's request ...
        writer.close()  # ... is dropped without a status line


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_a_connection_the_engine_closed_while_idle_is_retried_once(dialect: str) -> None:
    """The engine dropped the pooled connection just as Flexi sent on it (no answer at all): the request goes
    once more over a fresh connection to the same engine instead of failing as "unreachable"."""
    if dialect == "openai":
        events = [{"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}]
        engine = ClosingEngine(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
                               + b"data: [DONE]\n\n", b"text/event-stream")
    else:
        engine = ClosingEngine(json.dumps({"message": {"role": "assistant", "content": "Hi"}, "done": True,
                                           "done_reason": "stop", "eval_count": 1}).encode() + b"\n",
                               b"application/x-ndjson")

    async def run() -> list[list[object]]:
        server = await asyncio.start_server(engine.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1/" if dialect == "openai"
                                             else f"http://127.0.0.1:{port}") as http:
            results = []
            for _ in range(2):
                events = openai_wire.generate(http, "b", "m", CHAT, "openai") if dialect == "openai" \
                    else ollama_wire.generate(http, "b", "m", CHAT)
                results.append([e async for e in events])
            return results

    results = asyncio.run(run())
    assert [r[0].text for r in results] == ["Hi", "Hi"]  # type: ignore[union-attr]
    assert engine.connections == 2  # the second request: dropped on the old connection, answered on a new one
