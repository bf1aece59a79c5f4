"""A throwaway PostgreSQL server for the test session (initdb + pg_ctl into a
temporary directory, TCP on a free loopback port, no fsync), shared by the
database tests and the end-to-end tests that run the server on PostgreSQL.
PostgreSQL refuses to run as root, so as root it runs as the `postgres` system
user (or `flexitest`, created if needed). Without PostgreSQL installed the
fixture skips, or fails when FLEXI_REQUIRE_POSTGRES=1 (as in CI)."""

from __future__ import annotations

import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def _reachable(prefix: list[str], bindir: Path) -> bool:
    """Whether the (dropped) user can run the binaries in `bindir` (not if they live under /root, say)."""
    return not prefix or subprocess.run([*prefix, "test", "-x", str(bindir / "pg_ctl")], check=False).returncode == 0


@contextmanager
def running_postgres(bindir: Path, libdirs: tuple[Path, ...] = ()) -> Iterator[PostgresServer]:
    """A PostgreSQL server from the binaries in `bindir` (initdb, pg_ctl, postgres), in a temporary directory,
    stopped and removed on exit; `libdirs`: shared libraries they need from elsewhere (a wheel's vendored
    libpq). Binaries the unprivileged user cannot reach are copied into that directory first (PostgreSQL
    finds its lib/ and share/ relative to bin/; the extra libraries through LD_LIBRARY_PATH)."""
    prefix = _run_as()
    root = Path(tempfile.mkdtemp(prefix="flexi-pg-"))
    if not _reachable(prefix, bindir):
        for part in ("bin", "lib", "share"):
            if (bindir.parent / part).is_dir():
                shutil.copytree(bindir.parent / part, root / "install" / part, symlinks=True,
                                ignore=shutil.ignore_patterns("*.a"))
        for n, libdir in enumerate(libdirs):
            shutil.copytree(libdir, root / "install" / f"extra-lib-{n}", symlinks=True)
        bindir = root / "install" / "bin"
        libdirs = tuple(root / "install" / f"extra-lib-{n}" for n in range(len(libdirs)))
    if prefix:
        subprocess.run(["chown", "-R", prefix[2], str(root)], check=True)  # prefix: runuser -u USER --
    if libdirs:
        prefix = [*prefix, "env", "LD_LIBRARY_PATH=" + ":".join(map(str, libdirs))]
    data, log = root / "data", root / "server.log"
    port = _free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*prefix, *args], check=False, capture_output=True, text=True)
        if result.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n{server_log}", pytrace=False)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        try:
            yield PostgresServer(port)
        finally:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False, capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _pg_bin()
    if bindir is None:
        message = "PostgreSQL is not installed (no pg_ctl on PATH or in /usr/lib/postgresql/*/bin): apt-get install postgresql"
        if os.environ.get("FLEXI_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"FLEXI_REQUIRE_POSTGRES=1 but {message}", pytrace=False)
        pytest.skip(message)
    with running_postgres(bindir) as server:
        yield server


def pgvector_bin() -> tuple[Path, tuple[Path, ...]] | None:
    """The bin/ of the PostgreSQL with pgvector that the `pgserver` wheel ships (a test dependency), and the
    wheel's vendored libraries, if installed. Debian bookworm packages no pgvector; production installs
    postgresql-16-pgvector from PGDG instead."""
    spec = importlib.util.find_spec("pgserver")  # located, not imported: only its binaries are used
    if spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).parent
    bindir = package / "pginstall" / "bin"
    libs = package.parent / "pgserver.libs"  # auditwheel's vendored libpq, found through the binaries' RPATH
    return (bindir, (libs,) if libs.is_dir() else ()) if (bindir / "pg_ctl").exists() else None


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PostgresServer]:
    """A second throwaway PostgreSQL, with the pgvector extension (from the `pgserver` wheel)."""
    found = pgvector_bin()
    if found is None:
        message = "the pgserver package (PostgreSQL with pgvector, test extra) is not installed: pip install -e '.[test]'"
        if os.environ.get("FLEXI_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"FLEXI_REQUIRE_POSTGRES=1 but {message}", pytrace=False)
        pytest.skip(message)
    with running_postgres(*found) as server:
        yield server
