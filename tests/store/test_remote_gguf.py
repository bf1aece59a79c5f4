"""GGUF facts of a model not yet pulled, from ranged reads of its header only, through the pull guard.

A local HTTP server serves the bundled SmolLM2 file with Range support (and a Hugging Face tree listing),
so nothing here touches the internet."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from flexi.engine.types import BadRequest
from flexi.store.gguf_meta import InvalidModelFile, read_gguf_info
from flexi.store.netguard import AddressRefused
from flexi.store.remote_gguf import FIRST_RANGE, read_remote_info
from tests.store.test_gguf_meta import SMOLLM2

DATA = SMOLLM2.read_bytes()
FILE = SMOLLM2.name


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path.startswith("/api/models/org/repo/tree/main"):
            body = json.dumps([{"type": "file", "path": "README.md", "size": 10},
                               {"type": "file", "path": FILE, "size": len(DATA)}]).encode()
            return self._send(200, body, {"Content-Type": "application/json"})
        if self.path not in (f"/org/repo/resolve/main/{FILE}", f"/files/{FILE}", "/files/not.gguf"):
            return self._send(404, b"not found")
        data = b"just text, not a model " * 4000 if self.path.endswith("not.gguf") else DATA
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if match and self.server.ranges:
            start, end = int(match.group(1)), min(int(match.group(2)), len(data) - 1)
            self.server.ranges_asked.append((start, end))
            return self._send(206, data[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
        self.server.full_gets += 1
        self._send(200, data)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.server.cut_short += 1  # the reader hung up once it had enough


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ranges: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ranges = ranges
        self.paths: list[str] = []
        self.ranges_asked: list[tuple[int, int]] = []
        self.full_gets = 0
        self.cut_short = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _serve(ranges: bool) -> Iterator[_Server]:
    server = _Server(ranges)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def http() -> Iterator[_Server]:
    yield from _serve(ranges=True)


@pytest.fixture
def no_ranges() -> Iterator[_Server]:
    yield from _serve(ranges=False)


def test_hf_name_resolves_like_a_pull_and_only_the_header_is_read(http):
    settings = SimpleNamespace(hf_endpoint=http.base)  # the configured endpoint is trusted like an allow-listed host
    remote = asyncio.run(read_remote_info("hf.co/org/repo:Q4_1", settings))
    assert remote.label == FILE and remote.size == len(DATA)
    assert remote.info == read_gguf_info(SMOLLM2)
    # SmolLM2's metadata (its 49k-token vocabulary) is longer than the first range, so the read grew once
    assert http.ranges_asked == [(0, FIRST_RANGE - 1), (0, 4 * FIRST_RANGE - 1)]
    assert remote.bytes_read == 4 * FIRST_RANGE < len(DATA) / 20
    assert http.paths[0].startswith("/api/models/org/repo/tree/main")


def test_url_needs_the_allow_list_for_a_loopback_host(http):
    url = f"{http.base}/files/{FILE}"
    with pytest.raises(BadRequest):  # plain http only for allow-listed hosts, as for a pull
        asyncio.run(read_remote_info(url, SimpleNamespace(pull_allow_hosts=[])))
    with pytest.raises(AddressRefused):  # the pull guard: loopback is refused unless an admin allows it
        asyncio.run(read_remote_info(url, SimpleNamespace(pull_allow_hosts=[]), insecure=True))
    assert http.paths == []
    remote = asyncio.run(read_remote_info(url, SimpleNamespace(pull_allow_hosts=["127.0.0.1"])))
    assert remote.info.block_count == 30 and remote.size == len(DATA)


def test_a_server_ignoring_range_is_read_only_as_far_as_needed(no_ranges):
    remote = asyncio.run(read_remote_info(f"{no_ranges.base}/files/{FILE}",
                                          SimpleNamespace(pull_allow_hosts=["127.0.0.1"])))
    assert remote.info == read_gguf_info(SMOLLM2) and remote.size == len(DATA)
    assert remote.bytes_read <= 4 * FIRST_RANGE and no_ranges.full_gets == 2


def test_not_a_gguf_is_refused(http):
    with pytest.raises(InvalidModelFile):
        asyncio.run(read_remote_info(f"{http.base}/files/not.gguf", SimpleNamespace(pull_allow_hosts=["127.0.0.1"])))
