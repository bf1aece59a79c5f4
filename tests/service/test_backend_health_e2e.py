"""The circuit breaker and health probes end to end: a real Flexi in front of two engines that can be
switched between failing and healthy and count every hit ("flaky" and "steady"; both serve "shared", only
flaky serves "lonely"). Fake engines, not a second Flexi, so that every answer takes milliseconds and the
short cooldowns below are never reached by accident on a busy machine.

- requests open the circuit: after FLEXI_BACKEND_FAILURE_THRESHOLD failures the dead engine gets no more
  attempts, the other backend answers; a model served only there gets 503 + Retry-After at once (German
  too); after FLEXI_BACKEND_COOLDOWN one trial request closes the circuit again;
- probes: a failing health probe opens the circuit before any request is lost, a good one closes it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.metrics_helpers import parse, total

MESSAGES = [{"role": "user", "content": "Say hi."}]
FEW = {"num_predict": 3, "temperature": 0}
ANSWER = (b'{"message": {"content": "Hi"}, "done": false}\n'
          b'{"done": true, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 1}\n')


@dataclass
class Switch:
    """How the fake engine answers now, and how often it was asked."""

    chat_status: int = 200
    health_status: int = 200
    chats: int = 0
    probes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SwitchableEngine(BaseHTTPRequestHandler):
    """An Ollama-dialect engine: /api/chat and /api/version answer with the switch's status."""

    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    @property
    def switch(self) -> Switch:
        return self.server.switch  # type: ignore[attr-defined, no-any-return]

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.switch.lock:
            self.switch.probes += 1
        status = self.switch.health_status
        self._answer(status, b'{"version": "0.5.0"}' if status == 200 else b'{"error": "down"}', "application/json")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.switch.lock:
            self.switch.chats += 1
        if self.switch.chat_status != 200:
            self._answer(self.switch.chat_status, b'{"error": "CUDA error: an illegal memory access"}', "application/json")
            return
        self._answer(200, ANSWER, "application/x-ndjson")


@dataclass
class Setup:
    a: RunningServer
    switch: Switch  # flaky's
    steady: Switch


def _config(flaky: str, steady: str) -> str:
    return f'''
[[backends]]
name = "flaky"
url = "{flaky}"
kind = "ollama"
models = {{ "shared" = "x", "lonely" = "x" }}

[[backends]]
name = "steady"
url = "{steady}"
kind = "ollama"
models = {{ "shared" = "y" }}
'''


def _engine() -> ThreadingHTTPServer:
    engine = ThreadingHTTPServer(("127.0.0.1", 0), SwitchableEngine)
    engine.daemon_threads = True
    engine.switch = Switch()  # type: ignore[attr-defined]
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    return engine


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    """Starts Flexi A with the given breaker settings in front of two fresh engines."""
    started: list[RunningServer] = []
    engines: list[ThreadingHTTPServer] = []

    def run(**env: str) -> Setup:
        flaky, steady = _engine(), _engine()
        engines.extend((flaky, steady))
        home = tmp_path / "a"
        home.mkdir()
        (home / "config.toml").write_text(_config(f"http://127.0.0.1:{flaky.server_address[1]}",
                                                  f"http://127.0.0.1:{steady.server_address[1]}"))
        a = start_server(home, env)
        started.append(a)
        return Setup(a, flaky.switch, steady.switch)  # type: ignore[attr-defined]

    try:
        yield run
    finally:
        for a in started:
            stop_server(a)
        for engine in engines:
            engine.shutdown()


def _chat(a: RunningServer, model: str, **headers: str) -> httpx.Response:
    return httpx.post(a.url + "/api/chat", json={"model": model, "messages": MESSAGES, "stream": False, "options": FEW},
                      headers=headers, timeout=60)


def _backend(a: RunningServer, metric: str, **labels: str) -> float:
    return total(parse(httpx.get(a.url + "/metrics", timeout=10).text), metric, backend="flaky", **labels)


def _until(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_failures_open_the_circuit_and_a_trial_after_the_cooldown_closes_it(start: object) -> None:
    s: Setup = start(FLEXI_BACKEND_HEALTH_INTERVAL="0", FLEXI_BACKEND_FAILURE_THRESHOLD="3",  # type: ignore[operator]
                     FLEXI_BACKEND_COOLDOWN="3")
    s.switch.chat_status = 500
    for _ in range(3):  # flaky goes first (a tie keeps the configuration order), fails, steady answers
        r = _chat(s.a, "shared")
        assert r.status_code == 200 and r.json()["message"]["content"] == "Hi", r.text
    assert (s.switch.chats, s.steady.chats) == (3, 3)
    assert _backend(s.a, "flexi_backend_circuit_state") == 2 and _backend(s.a, "flexi_backend_up") == 0
    assert _backend(s.a, "flexi_backend_failures_total", reason="http_5xx") == 3
    assert "backend flaky: circuit open after 3 failures in a row" in s.a.log()

    for _ in range(3):  # open: straight to steady, not one more attempt at the dead one
        assert _chat(s.a, "shared").status_code == 200
    assert (s.switch.chats, s.steady.chats) == (3, 6)

    t0 = time.monotonic()
    r = _chat(s.a, "lonely")  # its only backend is open: 503 at once, nothing sent, nothing queued
    assert time.monotonic() - t0 < 1.0 and s.switch.chats == 3
    assert r.status_code == 503 and 1 <= int(r.headers["Retry-After"]) <= 3
    assert r.json()["error"] == f"every backend serving lonely:latest is unavailable at the moment; try again in {r.headers['Retry-After']} s"
    german = _chat(s.a, "lonely", **{"Accept-Language": "de"})
    assert german.status_code == 503 and german.json()["error"].startswith("alle Backends, die lonely:latest bereitstellen")
    openai_shape = httpx.post(s.a.url + "/v1/chat/completions", json={"model": "lonely", "messages": MESSAGES}, timeout=30)
    assert openai_shape.status_code == 503 and openai_shape.json()["error"]["code"] == "backend_unavailable"
    assert "Retry-After" in openai_shape.headers
    embed = httpx.post(s.a.url + "/api/embed", json={"model": "lonely", "input": ["x"]}, timeout=30)
    assert embed.status_code == 503 and "Retry-After" in embed.headers and s.switch.chats == 3

    s.switch.chat_status = 200  # the engine recovers; after the cooldown one trial request finds out
    _until(lambda: _backend(s.a, "flexi_backend_circuit_state") == 1)  # half-open: no probes, no request yet
    r = _chat(s.a, "lonely")
    assert r.status_code == 200 and r.json()["message"]["content"] == "Hi", r.text
    assert s.switch.chats == 4
    assert _backend(s.a, "flexi_backend_circuit_state") == 0 and _backend(s.a, "flexi_backend_up") == 1
    assert _chat(s.a, "shared").status_code == 200 and s.switch.chats == 5  # back in the rotation


def test_a_failing_probe_opens_the_circuit_and_a_good_one_closes_it(start: object) -> None:
    s: Setup = start(FLEXI_BACKEND_HEALTH_INTERVAL="0.3", FLEXI_BACKEND_COOLDOWN="60")  # type: ignore[operator]
    _until(lambda: s.switch.probes >= 1)
    assert _backend(s.a, "flexi_backend_up") == 1
    s.switch.health_status = 503  # e.g. llama-server loading its model again
    _until(lambda: _backend(s.a, "flexi_backend_circuit_state") == 2)
    r = _chat(s.a, "lonely")
    assert r.status_code == 503 and 55 <= int(r.headers["Retry-After"]) <= 60
    assert _chat(s.a, "shared").status_code == 200
    assert s.switch.chats == 0  # no request was lost on the engine the probe found down
    assert _backend(s.a, "flexi_backend_failures_total", reason="probe") >= 1
    s.switch.health_status = 200  # well before the cooldown ends, a good probe closes the circuit
    _until(lambda: _backend(s.a, "flexi_backend_circuit_state") == 0)
    r = _chat(s.a, "lonely")
    assert r.status_code == 200 and r.json()["message"]["content"] == "Hi"
    assert s.switch.chats == 1
    assert "backend flaky: circuit open after a health probe (health probe: HTTP 503)" in s.a.log()
    assert json.loads(httpx.get(s.a.url + "/api/version", timeout=5).text)["version"]  # A itself is fine throughout
