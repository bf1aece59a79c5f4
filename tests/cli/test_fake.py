"""A tiny real HTTP server answering like Ollama, for the CLI's command tests.

It stands in for Flexi only in these unit tests: it records every request so the
tests can assert what the CLI sent. Other test modules import `FakeOllama`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

DIGEST = "sha256:" + "2af3b81862c6" + "0" * 52
LICENSE = "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n"
TOKENS = ["Hello", ",", " world", "!"]
FINAL_STATS = {
    "total_duration": 1_500_000_000, "load_duration": 2_100_000,
    "prompt_eval_count": 10, "prompt_eval_duration": 50_000_000,
    "eval_count": 4, "eval_duration": 200_000_000,
}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class FakeOllama:
    """Ollama's REST API in miniature; `models` maps names to their show payloads."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    ps_expires: datetime | None = None

    def __post_init__(self) -> None:
        if not self.models:
            self.models["smollm2:135m"] = show_payload()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Recorded(self.command, self.path, dict(self.headers.items()), body)
                fake.requests.append(rec)
                fake.dispatch(self, rec)

            do_GET = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # --- lifecycle --------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeOllama":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def last(self, method: str, path: str) -> Recorded:
        return [r for r in self.requests if r.method == method and r.path == path][-1]

    # --- responses --------------------------------------------------------
    @staticmethod
    def send_json(h: BaseHTTPRequestHandler, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def send_stream(h: BaseHTTPRequestHandler, events: list[dict[str, Any]]) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.end_headers()
        for event in events:
            h.wfile.write(json.dumps(event).encode() + b"\n")
            h.wfile.flush()

    def not_found(self, h: BaseHTTPRequestHandler, name: str) -> None:
        self.send_json(h, 404, {"error": f'model "{name}" not found, try pulling it first'})

    def dispatch(self, h: BaseHTTPRequestHandler, rec: Recorded) -> None:
        body = {} if rec.path.startswith("/api/blobs/") else rec.json or {}
        name = body.get("model") or body.get("name") or ""
        route = f"{rec.method} {rec.path}"
        if route == "GET /api/version":
            return self.send_json(h, 200, {"version": "0.1.0-test"})
        if route == "GET /api/tags":
            return self.send_json(h, 200, {"models": [tag(n) for n in self.models]})
        if route == "GET /api/ps":
            return self.send_json(h, 200, {"models": [running(n, self.ps_expires) for n in self.models]})
        if rec.path.startswith("/api/blobs/"):
            return self.blob(h, rec)
        if route == "POST /api/pull":
            return self.pull(h, name)
        if route == "POST /api/create":
            return self.create(h, body)
        if route == "POST /api/copy":
            if body.get("source") not in self.models:
                return self.not_found(h, body.get("source", ""))
            self.models[body["destination"]] = self.models[body["source"]]
            return self.send_json(h, 200)
        if name not in self.models:
            return self.not_found(h, name)
        if route == "POST /api/show":
            return self.send_json(h, 200, self.models[name])
        if route == "DELETE /api/delete":
            del self.models[name]
            return self.send_json(h, 200)
        if route in ("POST /api/generate", "POST /api/chat"):
            return self.generate(h, rec.path, body)
        return self.send_json(h, 404, {"error": "not found"})

    def blob(self, h: BaseHTTPRequestHandler, rec: Recorded) -> None:
        digest = rec.path.rsplit("/", 1)[1]
        if rec.method == "HEAD":
            return self.send_json(h, 200 if digest in self.blobs else 404)
        actual = "sha256:" + hashlib.sha256(rec.body).hexdigest()
        if actual != digest:
            return self.send_json(h, 400, {"error": "digest mismatch"})
        self.blobs[digest] = rec.body
        return self.send_json(h, 201)

    def pull(self, h: BaseHTTPRequestHandler, name: str) -> None:
        events: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if name.startswith("missing"):
            events.append({"error": "pull model manifest: file does not exist"})
            return self.send_stream(h, events)
        for done in (0, 500_000, 1_000_000):
            events.append({"status": f"pulling {DIGEST[7:19]}", "digest": DIGEST, "total": 1_000_000, "completed": done})
        events += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        self.models[name] = show_payload()
        self.send_stream(h, events)

    def create(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        for digest in (body.get("files") or {}).values():
            if digest not in self.blobs:
                return self.send_json(h, 400, {"error": f"blob {digest} not found"})
        if body.get("from") and body["from"] not in self.models:
            return self.not_found(h, body["from"])
        self.models[body["model"]] = show_payload()
        self.send_stream(h, [{"status": "parsing GGUF"}, {"status": "writing manifest"}, {"status": "success"}])

    def generate(self, h: BaseHTTPRequestHandler, path: str, body: dict[str, Any]) -> None:
        chat = path == "/api/chat"
        base = {"model": body["model"], "created_at": datetime.now(timezone.utc).isoformat()}
        if not chat and not body.get("prompt"):
            reason = "unload" if body.get("keep_alive") == 0 else "load"
            return self.send_json(h, 200, {**base, "response": "", "done": True, "done_reason": reason})
        tokens = TOKENS
        if chat:
            last = body["messages"][-1]["content"]
            tokens = ["You", " said", ": ", last]
        events = [{**base, "message": {"role": "assistant", "content": tok}} if chat else {**base, "response": tok}
                  for tok in tokens]
        final = {**base, "done": True, "done_reason": "stop", **FINAL_STATS}
        final.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
        if body.get("stream") is False:
            return self.send_json(h, 200, final)
        self.send_stream(h, events + [final])


def show_payload() -> dict[str, Any]:
    return {
        "license": LICENSE,
        "modelfile": "FROM /models/blobs/sha256-2af3\nTEMPLATE {{ .Prompt }}\n",
        "parameters": 'stop                           "<|im_end|>"\ntemperature                    0.2',
        "template": "{{ .Prompt }}",
        "system": "You are a helpful assistant.",
        "details": {"format": "gguf", "family": "llama", "parameter_size": "134.52M", "quantization_level": "Q4_1"},
        "model_info": {"general.architecture": "llama", "general.parameter_count": 134515008,
                       "llama.context_length": 8192, "llama.embedding_length": 576},
        "capabilities": ["completion"],
    }


def tag(name: str) -> dict[str, Any]:
    modified = datetime.now(timezone.utc) - timedelta(minutes=2, seconds=5)
    return {"name": name, "model": name, "modified_at": modified.isoformat(), "size": 98_000_000,
            "digest": DIGEST.removeprefix("sha256:"), "details": {"format": "gguf"}}


def running(name: str, expires: datetime | None) -> dict[str, Any]:
    expires = expires or datetime.now(timezone.utc) + timedelta(minutes=4, seconds=30)
    return {"name": name, "model": name, "size": 180_000_000, "digest": DIGEST.removeprefix("sha256:"),
            "expires_at": expires.isoformat(), "size_vram": 0, "context_length": 4096}


def test_fake_server_answers_like_ollama() -> None:
    with FakeOllama() as fake:
        assert httpx.get(fake.url + "/api/version").json() == {"version": "0.1.0-test"}
        lines = httpx.post(fake.url + "/api/generate", json={"model": "smollm2:135m", "prompt": "hi"}).text
        assert [json.loads(x).get("response") for x in lines.splitlines()][:4] == TOKENS
        assert httpx.post(fake.url + "/api/show", json={"model": "nope"}).status_code == 404
