"""Shared fixtures, in one place for every test package: one real `flexi serve` per test session
(with a temporary FLEXI_HOME), `start_server` for tests that need their own, and the databases.

Markers are set here by what a test uses, so a new test cannot forget them:
- `e2e`: it or one of its fixtures (the session `server` included) calls `start_server` - a real
  server with the real model;
- `browser`: it drives Chromium through Playwright (tests/web);
- `db`: it runs on the test databases (`db_url` and what builds on it, or the PostgreSQL server).
`pytest -m "not e2e and not browser"` is the fast unit run.
"""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from flexi.db.engine import make_engine, session_factory
from flexi.db.migrate import upgrade
from tests.pg import PostgresServer, postgres_server, pgvector_server  # noqa: F401  (session fixtures: database and end-to-end tests share one server)
from tests.redis_server import redis_server  # noqa: F401  (a throwaway redis-server per test: tests/access/test_shared_state.py)

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
    # The bundled embedding model stays off unless a test asks for it: most tests count the models they see.
    env = {**os.environ, "FLEXI_HOME": str(home), "FLEXI_HOST": f"{bind}:{port}",
           "FLEXI_DEFAULT_EMBEDDING_MODEL": "false", **(extra_env or {})}
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


# --- databases: every test that takes `db_url` runs on SQLite and on a real PostgreSQL ---------------
# The PostgreSQL server is the session's throwaway one (tests/pg.py), with a fresh database per test.
# Without PostgreSQL installed the postgresql variants are skipped, or fail when
# FLEXI_REQUIRE_POSTGRES=1 (as in CI), so CI cannot pass without them.


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flexi.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on the empty database (not migrated)."""
    eng = make_engine(db_url, tmp_path)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Engine:
    """An engine on a database migrated to the newest revision."""
    upgrade(engine)
    return engine


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with session_factory(db)() as s:
        yield s


# --- markers by use ------------------------------------------------------------------------------------


def _source(func: Callable[..., object]) -> str:
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        return ""


def _uses(item: pytest.Item) -> tuple[set[str], str]:
    """The fixtures a test needs (all of them, also indirectly) and the source of the test and its fixtures."""
    info = getattr(item, "_fixtureinfo", None)
    names = set(getattr(item, "fixturenames", ()))
    funcs = [getattr(item, "function", None)]
    if info is not None:
        funcs += [defs[-1].func for defs in info.name2fixturedefs.values() if defs]
    return names, "\n".join(_source(f) for f in funcs if f is not None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names, source = _uses(item)
        if "start_server(" in source:  # also through the session `server` fixture, which calls it
            item.add_marker(pytest.mark.e2e)
        if "playwright" in source:
            item.add_marker(pytest.mark.browser)
        if "db_url" in names or any(f in names or f in source for f in ("postgres_server", "pgvector_server")):
            item.add_marker(pytest.mark.db)
