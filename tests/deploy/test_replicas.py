"""Two Flexi replicas on one PostgreSQL and one Redis, behind Debian's nginx (issue 14, part 2).

Everything real: redis-server and PostgreSQL started here, two `flexi serve` with the default model,
and nginx with a generated configuration (both replicas as upstreams, buffering off) in front. Each
test uses its own people, so the usage rows it counts are its own. The replica is killed last.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from flexi.access.passwords import hash_password
from flexi.access.usage_journal import interrupt_stale
from flexi.db.models import UsageRecord, utcnow
from flexi.http.csrf import CSRF_HEADER
from tests.access_helpers import ServerDB, fresh_minute
from tests.conftest import MODEL, RunningServer, start_server, stop_server
from tests.pg import PostgresServer
from tests.nginx import Nginx, nginx_binary, start_nginx
from tests.redis_server import RedisServer, running_redis

CAP = 2  # a student's cap on concurrent requests per model (FLEXI_ROLE_MAX_REQUESTS)
LEASE_SECONDS = 3


@dataclass
class Cluster:
    redis: RedisServer
    pg: PostgresServer
    database: str
    a: RunningServer
    b: RunningServer
    nginx: Nginx
    db: ServerDB

    def person(self, name: str, role: str = "student", **quota: int | None) -> str:
        """A new person with an API key (and their own `quota` limits, if any); returns the key."""
        uid = self.db.add_user(name, role=role, locale="en")
        if quota:
            self.db.set_quota("user", uid, **quota)
        return self.db.add_key(uid)[1]

    def ok_rows(self, subject: str) -> int:
        """Usage rows of `subject` that record a completed request (the usage writer batches: wait a moment)."""
        return sum(1 for r in self.db.usage(self.db.pseudonym(subject)) if r.status == "ok")

    def rows(self, subject: str, status: str) -> list[UsageRecord]:
        """Usage rows of `subject` with `status`, oldest first."""
        return [r for r in self.db.usage(self.db.pseudonym(subject)) if r.status == status]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    nginx_binary()  # skip (or fail in CI) before starting anything
    with running_redis(root / "redis") as redis_server:
        database = postgres_server.create_database()
        url = postgres_server.url(database)
        env = {"FLEXI_AUTH": "on", "FLEXI_DATABASE_URL": url, "FLEXI_REDIS_URL": redis_server.url,
               "FLEXI_PSEUDONYM_KEY": secrets.token_hex(32),  # replicas share it (users are pseudonymised alike)
               "FLEXI_ROLE_MAX_REQUESTS": json.dumps({"student": CAP, "service": 64}),
               "FLEXI_REDIS_LEASE_SECONDS": str(LEASE_SECONDS),
               "FLEXI_TRUSTED_PROXIES": "127.0.0.1", "FLEXI_NUM_PARALLEL": "4"}
        a = start_server(root / "a" / "home", env)  # one after the other: the first migrates the database
        b = start_server(root / "b" / "home", env)
        old_key = os.environ.get("FLEXI_PSEUDONYM_KEY")
        os.environ["FLEXI_PSEUDONYM_KEY"] = env["FLEXI_PSEUDONYM_KEY"]  # ServerDB pseudonymises like the replicas
        try:
            db = ServerDB(a.home, url)
        finally:
            if old_key is None:
                os.environ.pop("FLEXI_PSEUDONYM_KEY")
            else:
                os.environ["FLEXI_PSEUDONYM_KEY"] = old_key
        nginx = start_nginx(root / "nginx", [a.url, b.url])
        cluster = Cluster(redis_server, postgres_server, database, a, b, nginx, db)
        try:
            warm = cluster.person("warm-up")
            for replica in (a, b):  # load the model on both, so the tests measure limits, not loading
                assert generate(replica.url, warm).status_code == 200
            yield cluster
        finally:
            nginx.proc.terminate()
            nginx.proc.wait(10)
            db.close()
            for replica in (a, b):
                if replica.proc.poll() is None:
                    stop_server(replica)
            postgres_server.drop_database(database)


def generate(base: str, key: str, tokens: int = 3, **extra: object) -> httpx.Response:
    body = {"model": MODEL, "prompt": "Count to ten.", "stream": False,
            "options": {"num_predict": tokens, "temperature": 0}, **extra}
    return httpx.post(base + "/api/generate", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)


class Stream:
    """A streaming generation held open in a thread: started, then finished or cut off."""

    def __init__(self, base: str, key: str, tokens: int = 400) -> None:
        self.started = threading.Event()
        self.status: int | None = None
        self.done = False  # the final `done: true` line arrived
        self.lines = 0
        self.error: str | None = None
        self.body = {"model": MODEL, "prompt": "Write a long story about a lighthouse.", "stream": True,
                     "options": {"num_predict": tokens, "temperature": 0, "ignore_eos": True}}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(base, key), daemon=True)
        self.thread.start()

    def _run(self, base: str, key: str) -> None:
        try:
            with httpx.stream("POST", base + "/api/generate", json=self.body, timeout=120,
                              headers={"Authorization": f"Bearer {key}"}) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    self.started.set()
                    self.lines += 1
                    msg = json.loads(line)
                    if msg.get("error"):
                        self.error = msg["error"]
                    if msg.get("done"):
                        self.done = True
                    if self.stop.is_set():
                        return  # the client leaves: the replica cancels the generation
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.started.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)


def _parallel(n: int, call) -> list[httpx.Response]:  # type: ignore[no-untyped-def]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: call(i), range(n)))


def test_rate_limit_is_exact_across_replicas(cluster: Cluster) -> None:
    n = 6
    key = cluster.person("rate-user", role="service", requests_per_minute=n)  # a service: no tight per-person cap
    fresh_minute(15)  # the per-minute window must not turn over during the burst (a few seconds)
    before = len(cluster.nginx.upstreams())
    codes = [r.status_code for r in _parallel(3 * n, lambda i: generate(cluster.nginx.url, key, 1))]
    assert codes.count(200) == n, codes  # exactly N, though both replicas admitted requests at once
    assert codes.count(429) == 2 * n, codes
    served = set(cluster.nginx.upstreams()[before:])
    assert len(served) == 2, served  # nginx spread the burst over both replicas
    deadline = time.monotonic() + 15
    while cluster.ok_rows("rate-user") < n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.ok_rows("rate-user") == n  # every success recorded, once


def test_sessions_keys_and_sign_in_throttle_work_on_every_replica(cluster: Cluster) -> None:
    cluster.db.add_user("walker", role="student", locale="en", password_hash=hash_password("correct horse"))
    signed_in = httpx.post(cluster.a.url + "/auth/password", json={"username": "walker", "password": "correct horse"})
    assert signed_in.status_code == 200
    cookie = "flexi_session=" + signed_in.cookies["flexi_session"]
    csrf = signed_in.json()["csrf_token"]
    me = httpx.get(cluster.b.url + "/me", headers={"Cookie": cookie})  # no sticky sessions needed
    assert me.status_code == 200 and me.json()["subject"] == "walker"
    made = httpx.post(cluster.b.url + "/me/keys", json={"name": "script"}, headers={"Cookie": cookie, CSRF_HEADER: csrf})
    assert made.status_code == 201, made.text
    assert generate(cluster.a.url, made.json()["key"]).status_code == 200  # a key made on B works on A
    # password guessing spread over both replicas is slowed down as on one (the buckets live in Redis)
    codes = [httpx.post((cluster.a if i % 2 else cluster.b).url + "/auth/password",
                        json={"username": "walker", "password": f"guess{i}"}).status_code for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429, codes
    blocked = httpx.post(cluster.a.url + "/auth/password", json={"username": "walker", "password": "correct horse"})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


def test_per_person_cap_holds_across_replicas(cluster: Cluster) -> None:
    key = cluster.person("cap-user")
    streams = [Stream(cluster.a.url, key), Stream(cluster.b.url, key)]  # one on each: each replica alone sees 1 < CAP
    try:
        for s in streams:
            assert s.started.wait(60) and s.status == 200, s.error
        refused = [generate(cluster.nginx.url, key, 1) for _ in range(2)]  # whichever replica nginx picks
        for r in refused:
            assert r.status_code == 429 and r.json()["error"].startswith("too many requests at once"), r.text
            assert int(r.headers["retry-after"]) > 0
        assert generate(cluster.nginx.url, cluster.person("cap-other"), 1).status_code == 200  # only this person
    finally:
        for s in streams:
            s.close()
    time.sleep(1.0)  # the replicas notice the closed streams and hand their leases back
    results = _parallel(CAP, lambda i: generate(cluster.nginx.url, key, 1))
    assert [r.status_code for r in results] == [200] * CAP
    # the closed streams are on record as cancelled: giving their leases back to Redis must not lose them
    deadline = time.monotonic() + 15
    while (len(cluster.rows("cap-user", "cancelled")) < 2 or cluster.ok_rows("cap-user") < CAP) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(cluster.rows("cap-user", "cancelled")) == 2 and cluster.ok_rows("cap-user") == CAP


def test_postgres_connections_killed_recover(cluster: Cluster) -> None:
    key = cluster.person("pg-user")
    assert generate(cluster.nginx.url, key, 1).status_code == 200
    with cluster.pg.admin() as conn:
        killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (cluster.database,)).fetchone()
    assert killed is not None and killed[0] >= 2  # the pools of both replicas (and ours)
    results = [generate(base, key, 1) for base in (cluster.a.url, cluster.b.url, cluster.nginx.url, cluster.nginx.url)]
    assert [r.status_code for r in results] == [200] * 4, [r.text for r in results]
    deadline = time.monotonic() + 30  # a usage batch cut off with its connection is written again
    while cluster.ok_rows("pg-user") < 5 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert cluster.ok_rows("pg-user") == 5


def test_redis_restarted_during_load_fails_closed_then_recovers(cluster: Cluster) -> None:
    """Documented outcome (FLEXI_REDIS_FAILURE=closed): while Redis is down, requests under the per-person
    cap get 503 with Retry-After and a clear message, nothing else; once it is back they succeed again,
    without restarting a replica. Quotas never depended on Redis: they are exact throughout."""
    keys = [cluster.person(f"redis-user-{i}", requests_per_minute=10_000) for i in range(3)]  # only the cap applies
    outcomes: list[httpx.Response] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(key: str) -> None:
        while not stop.is_set():
            r = generate(cluster.nginx.url, key, 1)
            with lock:
                outcomes.append(r)

    with concurrent.futures.ThreadPoolExecutor(len(keys)) as pool:
        workers = [pool.submit(load, k) for k in keys]
        time.sleep(1.0)
        cluster.redis.stop()
        time.sleep(1.5)
        down = generate(cluster.nginx.url, keys[0], 1)
        cluster.redis.start()  # same port, empty (no persistence)
        time.sleep(1.5)
        stop.set()
        for w in workers:
            w.result()
    assert down.status_code == 503 and int(down.headers["retry-after"]) > 0
    assert down.json()["error"].startswith("the service cannot check its limits right now")
    codes = [r.status_code for r in outcomes]
    assert set(codes) <= {200, 503}, [r.text for r in outcomes if r.status_code not in (200, 503)]
    assert all(r.json()["error"] == down.json()["error"] for r in outcomes if r.status_code == 503)
    assert codes.count(200) > 0
    after = _parallel(3, lambda i: generate(cluster.nginx.url, keys[i], 1))  # recovered by itself
    assert [r.status_code for r in after] == [200] * 3
    ok = codes.count(200) + 3
    deadline = time.monotonic() + 15
    while sum(cluster.ok_rows(f"redis-user-{i}") for i in range(3)) < ok and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sum(cluster.ok_rows(f"redis-user-{i}") for i in range(3)) == ok  # no usage record lost


def test_killed_replica_affects_only_its_own_streams(cluster: Cluster) -> None:
    """SIGKILL one replica mid-load (last test: it stays dead). Its own streams break; the other's finish;
    new requests through nginx all succeed (a POST that never reached the dead replica goes to the live
    one); the dead replica's leases expire after FLEXI_REDIS_LEASE_SECONDS. No usage record is lost: the
    dead replica's in-flight requests were journaled "running" when they started, and the sweep (every
    replica's, here called directly instead of waiting FLEXI_REQUEST_TIMEOUT + grace) marks them "interrupted"."""
    survivor_key, victim_key = cluster.person("survivor", role="service"), cluster.person("victim")
    on_a = [Stream(cluster.a.url, survivor_key, 60) for _ in range(2)]
    on_b = [Stream(cluster.b.url, victim_key, 400) for _ in range(CAP)]  # the victim's whole cap, on B
    for s in on_a + on_b:
        assert s.started.wait(60) and s.status == 200, s.error
    deadline = time.monotonic() + 10  # the journal is written with the usage writer's next batch (~0.1 s)
    while len(cluster.rows("victim", "running")) < CAP and time.monotonic() < deadline:
        time.sleep(0.1)
    running = cluster.rows("victim", "running")
    assert len(running) == CAP, [(r.status, r.replica) for r in cluster.db.usage(cluster.db.pseudonym("victim"))]
    assert {r.replica for r in running} == {f"{socket.gethostname()}:{urlsplit(cluster.b.url).port}"}
    os.kill(cluster.b.proc.pid, signal.SIGKILL)
    cluster.b.proc.wait(10)
    assert generate(cluster.nginx.url, victim_key, 1).status_code == 429  # B's leases still count...
    for s in on_a:
        s.thread.join(90)
        assert s.done and s.error is None, (s.thread.is_alive(), s.status, s.error, s.lines)  # the other replica's streams finish
    for s in on_b:
        s.thread.join(30)
        assert not s.done  # cut off with their replica
    time.sleep(LEASE_SECONDS + 0.5)  # ...until they expire: nobody is locked out by a dead replica
    results = _parallel(6, lambda i: generate(cluster.nginx.url, victim_key if i < CAP else survivor_key, 1))
    assert [r.status_code for r in results] == [200] * 6, [r.text for r in results]
    deadline = time.monotonic() + 15
    while cluster.ok_rows("survivor") < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.ok_rows("survivor") == 2 + (6 - CAP)  # both finished streams and the new requests
    while cluster.ok_rows("victim") < CAP and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [r.id for r in cluster.rows("victim", "running")] == [r.id for r in running]  # on record, still running
    assert interrupt_stale(cluster.db.engine, utcnow()) == CAP  # only the dead replica's rows were still running
    interrupted = cluster.rows("victim", "interrupted")
    assert [r.id for r in interrupted] == [r.id for r in running] and cluster.ok_rows("victim") == CAP
    assert all(r.prompt_tokens == r.completion_tokens == 0 for r in interrupted)
