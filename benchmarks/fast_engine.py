"""A minimal OpenAI-compatible engine that answers at once: the backend for measuring what a gateway adds.

Measuring Flexi's overhead in front of a remote engine needs an engine whose own time is small and
constant, otherwise the engine's noise hides the gateway's milliseconds. This one speaks just enough of
the OpenAI API (the shape vLLM and llama-server return) for Flexi's `openai` backend kind:
`POST /v1/chat/completions` (JSON or SSE stream, with `usage`), `GET /v1/models`, `GET /health`.
Plain asyncio streams and HTTP/1.1 keep-alive, no framework, so its cost per request stays in the tens of
microseconds. It is a benchmark tool, never a test stand-in for a real engine.

    python -m benchmarks.fast_engine --port 18080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

ANSWER = "Blue."
MODELS = json.dumps({"object": "list", "data": [{"id": "echo", "object": "model", "owned_by": "bench"}]}).encode()


def _completion(model: str, prompt_tokens: int) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2},
    }).encode()


def _stream(model: str, prompt_tokens: int) -> bytes:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2,
                                          "total_tokens": prompt_tokens + 2}},
    ]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _response(status: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def answer(method: bytes, path: bytes, body: bytes) -> bytes:
    if method == b"GET" and path == b"/health":
        return _response(b"200 OK", b'{"status":"ok"}')
    if method == b"GET" and path == b"/v1/models":
        return _response(b"200 OK", MODELS)
    if method == b"POST" and path == b"/v1/chat/completions":
        try:
            request = json.loads(body)
        except ValueError:
            return _response(b"400 Bad Request", b'{"error":{"message":"invalid JSON"}}')
        prompt_tokens = sum(len(str(m.get("content", "")).split()) + 4 for m in request.get("messages", []))
        model = str(request.get("model", "echo"))
        if request.get("stream"):
            return _response(b"200 OK", _stream(model, prompt_tokens), b"text/event-stream")
        return _response(b"200 OK", _completion(model, prompt_tokens))
    return _response(b"404 Not Found", b'{"error":{"message":"not found"}}')


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            method, path, _ = request_line.split(b" ", 2)
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            writer.write(answer(method, path.split(b"?", 1)[0], body))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(_serve_connection, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
