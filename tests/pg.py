"""A throwaway PostgreSQL server for the test session (initdb + pg_ctl into a
temporary directory, TCP on a free loopback port, no fsync), shared by the
database tests and the end-to-end tests that run the server on PostgreSQL.
PostgreSQL refuses to run as root, so as root it runs as the `postgres` system
user (or `flexitest`, created if needed). Without PostgreSQL installed the
fixture skips, or fails when FLEXI_REQUIRE_POSTGRES=1 (as in CI)."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

PG_USER = "flexi"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def _run_as() -> list[str]:
    """Command prefix that drops root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "flexitest"):
        try:
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "flexitest"], check=True)
    return ["runuser", "-u", "flexitest", "--"]


@dataclass
class PostgresServer:
    port: int
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True)

    def create_database(self) -> str:
        name = f"test_{os.getpid()}_{next(self._ids)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _pg_bin()
    if bindir is None:
        message = "PostgreSQL is not installed (no pg_ctl on PATH or in /usr/lib/postgresql/*/bin): apt-get install postgresql"
        if os.environ.get("FLEXI_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"FLEXI_REQUIRE_POSTGRES=1 but {message}", pytrace=False)
        pytest.skip(message)
    prefix = _run_as()
    root = Path(tempfile.mkdtemp(prefix="flexi-pg-"))
    if prefix:
        shutil.chown(root, user=prefix[2])
    data, log = root / "data", root / "server.log"
    port = _free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*prefix, *args], check=False, capture_output=True, text=True)
        if result.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n{server_log}", pytrace=False)

    run(str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    try:
        yield PostgresServer(port)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


