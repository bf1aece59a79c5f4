"""A throwaway redis-server (Debian's package) for tests: on a free loopback port, no persistence, in a
temporary directory; stoppable and restartable on the same port (Redis restarted during load).
Without redis-server installed the fixture skips, or fails when FLEXI_REQUIRE_REDIS=1 (as in CI)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    binary: str
    directory: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.directory / "redis.log", "ab")
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.directory), "--protected-mode", "yes"],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited:\n{(self.directory / 'redis.log').read_text()}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail("redis-server did not answer within 10 s", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # no persistence: what it held is gone, as after a crash
            self.proc.wait()
        self.proc = None


def redis_binary() -> str | None:
    return shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


@contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """A redis-server with its files in `directory`, killed on exit; skips (or fails with
    FLEXI_REQUIRE_REDIS=1, as in CI) when redis-server is not installed."""
    binary = redis_binary()
    if binary is None:
        message = "redis-server is not installed: apt-get install redis-server"
        if os.environ.get("FLEXI_REQUIRE_REDIS") == "1":
            pytest.fail(f"FLEXI_REQUIRE_REDIS=1 but {message}", pytrace=False)
        pytest.skip(message)
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(binary, directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server
