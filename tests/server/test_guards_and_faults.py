"""Request guards (Host, Origin, body size) and runner faults, each on its own real server."""

from __future__ import annotations

import http.server
import os
import signal
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import ollama
import pytest

from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("guarded") / "home",
                       {"FLEXI_MAX_REQUEST_BYTES": "4096", "FLEXI_ORIGINS": "https://moodle.example.edu",
                        "FLEXI_ALLOWED_HOSTS": "flexi.campus.example",
                        "FLEXI_PULL_ALLOW_HOSTS": "127.0.0.1"})  # the pull test's file server is on loopback
    yield srv
    stop_server(srv)


def test_dns_rebinding_host_rejected(guarded: RunningServer) -> None:
    r = httpx.get(guarded.url + "/api/tags", headers={"Host": "evil.example.com"})
    assert r.status_code == 403 and "host" in r.json()["error"]
    assert httpx.get(guarded.url + "/api/tags", headers={"Host": "localhost:11434"}).status_code == 200
    assert httpx.get(guarded.url + "/api/tags", headers={"Host": "flexi.campus.example"}).status_code == 200


def test_cross_origin_rejected_and_allowed(guarded: RunningServer) -> None:
    r = httpx.get(guarded.url + "/api/tags", headers={"Origin": "https://evil.example.com"})
    assert r.status_code == 403
    ok = httpx.get(guarded.url + "/api/tags", headers={"Origin": "https://moodle.example.edu"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://moodle.example.edu"
    local = httpx.get(guarded.url + "/api/tags", headers={"Origin": "http://localhost:3000"})
    assert local.status_code == 200
    pre = httpx.options(guarded.url + "/v1/chat/completions", headers={
        "Origin": "https://moodle.example.edu", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]


def test_body_over_limit_413(guarded: RunningServer) -> None:
    big = {"model": MODEL, "prompt": "x" * 10_000}
    r = httpx.post(guarded.url + "/api/generate", json=big)
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = httpx.post(guarded.url + "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x" * 10_000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"model": "smollm2:135m", "prompt": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = httpx.post(guarded.url + "/api/generate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert httpx.get(guarded.url + "/api/tags").status_code == 200


def _runner_pids(server: RunningServer) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env_ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"flexi.engine.runner" in cmd and env_ppid == server.proc.pid:
            out.append(int(proc.name))
    return out


def test_runner_crash_mid_batch_gives_clear_500_and_recovers(guarded: RunningServer) -> None:
    client = ollama.Client(host=guarded.url, timeout=60)
    client.generate(model=MODEL, prompt="Hi", options={"num_predict": 1})
    pids = _runner_pids(guarded)
    assert len(pids) == 1
    errors: list[str] = []
    generating = threading.Barrier(4)  # three streams with output under way, and the test

    def stream_one() -> None:
        try:
            stream = client.generate(model=MODEL, prompt="Tell a long story.", stream=True,
                                     options={"num_predict": 3000, "ignore_eos": True})
            for i, _ in enumerate(stream):
                if i == 0:
                    generating.wait(timeout=120)
            errors.append("finished without error")
        except ollama.ResponseError as exc:
            errors.append(exc.error)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=stream_one) for _ in range(3)]
    for t in threads:
        t.start()
    generating.wait(timeout=120)  # every stream has its first token: all three are in the runner's batch
    os.kill(pids[0], signal.SIGKILL)
    for t in threads:
        t.join(60)
    assert len(errors) == 3
    assert all("runner stopped unexpectedly" in e for e in errors), errors
    # the server is alive and the next request gets a fresh runner
    r = client.generate(model=MODEL, prompt="Hi", options={"num_predict": 2})
    assert r.done
    assert _runner_pids(guarded) and _runner_pids(guarded) != pids


def test_runner_dead_before_a_request_is_replaced_not_used(guarded: RunningServer) -> None:
    """A runner that died while idle is noticed (the model leaves /api/ps) and replaced: the next
    request never sees it. (One that arrives before the death is noticed gets the 500 below: no
    automatic retry, since a request that kills the runner would then kill every replacement.)"""
    httpx.post(guarded.url + "/api/generate", json={"model": MODEL, "keep_alive": -1}, timeout=60)
    (pid,) = _runner_pids(guarded)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _expiry(guarded) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _expiry(guarded) is None, "the dead runner is still listed as loaded"
    r = httpx.post(guarded.url + "/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                        "options": {"num_predict": 2}}, timeout=60)
    assert r.status_code == 200 and r.json()["done"]
    assert _runner_pids(guarded) and pid not in _runner_pids(guarded)


def _expiry(server: RunningServer) -> str | None:
    entries = [m for m in httpx.get(server.url + "/api/ps").json()["models"] if m["name"] == MODEL]
    return entries[0]["expires_at"] if entries else None


def _wait_until_in_flight(server: RunningServer, pending: threading.Thread) -> None:
    """Wait until the model has a request in flight: /api/ps reports an active model's expiry
    as "now + keep_alive" (it moves), an idle model's as a fixed deadline."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and pending.is_alive():
        first = _expiry(server)
        time.sleep(0.05)
        if first is not None and _expiry(server) != first:
            return
    raise AssertionError("the request never reached the runner")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_runner_crash_before_the_first_token_is_http_500(guarded: RunningServer, stream: bool) -> None:
    """The runner dies after it was handed the request but before any output: the client gets
    an HTTP 500 with the reason, not a 200 with an error hidden in the body; streamed requests
    too, because the stream is primed (first event awaited) before the status line is sent."""
    httpx.post(guarded.url + "/api/generate", json={"model": MODEL, "keep_alive": "10m"}, timeout=60)
    (pid,) = _runner_pids(guarded)
    answers: list[httpx.Response] = []
    os.kill(pid, signal.SIGSTOP)  # frozen: the request is sent to it, nothing comes back
    try:
        t = threading.Thread(target=lambda: answers.append(httpx.post(
            guarded.url + "/api/generate", timeout=60,
            json={"model": MODEL, "prompt": "Hi", "stream": stream, "options": {"num_predict": 2}})))
        t.start()
        _wait_until_in_flight(guarded, t)
    finally:
        os.kill(pid, signal.SIGKILL)
    t.join(60)
    (r,) = answers
    assert r.status_code == 500, (r.status_code, r.text)
    assert "runner stopped unexpectedly" in r.json()["error"]
    ok = httpx.post(guarded.url + "/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": stream,
                                                         "options": {"num_predict": 2}}, timeout=60)
    assert ok.status_code == 200 and pid not in _runner_pids(guarded)  # a fresh runner took over


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from flexi.store.store import default_model_file

    root = tmp_path_factory.mktemp("www")
    src = default_model_file()
    assert src is not None
    os.link(src, root / "tiny-model.gguf") if os.stat(src).st_dev == os.stat(root).st_dev else \
        (root / "tiny-model.gguf").write_bytes(Path(src).read_bytes())
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_pull_from_local_http_server_with_official_client(guarded: RunningServer, file_server: str) -> None:
    client = ollama.Client(host=guarded.url, timeout=120)
    events = list(client.pull(file_server + "/tiny-model.gguf", stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    progress = [e for e in events if e.total]
    assert progress and progress[-1].completed == progress[-1].total
    names = [m.model for m in client.list().models]
    assert "tiny-model:latest" in names
    r = client.generate(model="tiny-model", prompt="Hi", options={"num_predict": 2})
    assert r.done
    missing = httpx.post(guarded.url + "/api/pull", json={"model": file_server + "/nope.gguf", "stream": False}, timeout=30)
    assert missing.status_code == 502 and "404" not in missing.text  # upstream status goes to the log only
