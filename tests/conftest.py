"""Shared fixtures: one real `flexi serve` per test session, with a temporary FLEXI_HOME."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.pg import postgres_server  # noqa: F401  (a session fixture: database and end-to-end tests share one server)

MODEL = "smollm2:135m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(home: Path, extra_env: dict[str, str] | None = None, timeout: float = 60, bind: str = "127.0.0.1",
                 port: int | None = None) -> RunningServer:
    port = port or free_port()
    env = {**os.environ, "FLEXI_HOME": str(home), "FLEXI_HOST": f"{bind}:{port}", **(extra_env or {})}
    env.pop("FLEXI_CONFIG", None)
    log_path = home.parent / f"{home.name}-server.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flexi", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{bind}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"flexi serve exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/api/version", timeout=1).status_code in (200, 401):  # 401: auth is on
                return RunningServer(url=url, home=home, proc=proc, log_path=log_path)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"flexi serve did not answer within {timeout} s:\n{log_path.read_text(errors='replace')}")


def stop_server(server: RunningServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The shared real server (real llama.cpp runner, real default model)."""
    srv = start_server(tmp_path_factory.mktemp("flexi") / "home")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def base_url(server: RunningServer) -> str:
    return server.url


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield client
