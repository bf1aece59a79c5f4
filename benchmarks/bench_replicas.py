"""Two Flexi replicas behind nginx against one (issue 14 target: ≥ 1.8× one replica's request throughput).

The campus setup in miniature: a fast OpenAI-compatible engine (`benchmarks.fast_engine`, answers in
microseconds, so the gateway is what limits), Flexi replicas with access control on sharing one
PostgreSQL (an API key of a service account with quotas and a policy rule: authentication, policy, quota
admission and the usage record on every request), and Debian's nginx in front (`least_conn`, keep-alive
upstream connections, as `deploy/nginx/flexi.conf`). Two nginx instances run side by side, one with only
replica A upstream and one with A and B, so the phases differ only in the number of replicas. Each phase
is a closed loop of `--concurrency` lean keep-alive clients sending short chat completions
(`POST /v1/chat/completions`, non-streaming) for `--seconds`; phases alternate (1, 2, 2, 1, …).

Everything shares the machine: on 2 cores, nginx, PostgreSQL, the engine and the load generator take CPU
the replicas then lack, so the ratio measured here is a floor for hosts where replicas have their own cores.

    python -m benchmarks.bench_replicas [--seconds 20] [--rounds 2] [--concurrency 32]

Writes benchmarks/results/replicas.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_batching import LeanHttp
from benchmarks.common import FlexiServer, machine, wait_for_quiet_cpu, write_results

ENGINE_PORT = 18081
REPLICA_PORTS = (11481, 11482)
NGINX_PORTS = {1: 11471, 2: 11472}
MODEL = "echo:fast"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4}

NGINX_CONF = """worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream flexi {{
    least_conn;
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://flexi;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_buffering off;
    }}
  }}
}}
"""


@contextlib.contextmanager
def nginx(port: int, upstreams: list[int]) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    root = Path(tempfile.mkdtemp(prefix="flexi-nginx-"))
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in upstreams)
    (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port, servers=servers))
    user = "user root;\n" if hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0 else ""
    if user:
        (root / "nginx.conf").write_text(user + (root / "nginx.conf").read_text())
    proc = subprocess.Popen([binary, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/api/version", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"nginx did not start: {(root / 'error.log').read_text() if (root / 'error.log').exists() else ''}")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _provision(database_url: str, home: str) -> str:
    """A service account with a key, quotas and a policy rule, written to the shared database."""
    from sqlalchemy.orm import Session

    from flexi.db.apikeys import create_key
    from flexi.db.engine import make_engine
    from flexi.db.models import ModelPolicy, Quota, RoleQuota, User
    from flexi.db.pseudonym import load_key, pseudonymize

    engine = make_engine(database_url, Path(home))
    with Session(engine) as s:
        user = User(subject="bench-service", pseudonym=pseudonymize("bench-service", load_key(Path(home))), role="service")
        s.add(user)
        s.flush()
        s.add(Quota(subject_kind="user", subject_id=user.id, requests_per_minute=10**7, tokens_per_day=10**12,
                    tokens_per_week=10**13))
        s.add(RoleQuota(role="service", requests_per_minute=10**7))
        s.add(ModelPolicy(pattern="echo*", allowed_roles=["service"]))
        key = create_key(s, user.id, "bench").key
        s.commit()
    engine.dispose()
    return key


async def _closed_loop(url: str, headers: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    done, errors = 0, 0
    first_error = None
    latencies: list[float] = []
    conns = [await LeanHttp.connect(url) for _ in range(concurrency)]
    for conn in conns:  # warm: connections through nginx to the replicas, caches
        await conn.post_json("/v1/chat/completions", BODY, headers)
    stop = time.perf_counter() + seconds

    async def worker(conn: LeanHttp) -> None:
        nonlocal done, errors, first_error, conn_
        conn_ = conn
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                await conn.post_json("/v1/chat/completions", BODY, headers)
            except (RuntimeError, ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                errors += 1
                first_error = first_error or str(exc)[:200]
                conn.close()
                conn = await LeanHttp.connect(url)
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            done += 1
        conn.close()

    conn_ = None
    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    return {"requests": done, "errors": errors, "first_error": first_error, "seconds": round(elapsed, 2),
            "rps": round(done / elapsed, 1), "p50_ms": round(statistics.median(latencies), 2) if latencies else None}


def _wait(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/health", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the fast engine did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pg import _pg_bin, running_postgres

    bindir = _pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    engine_url = f"http://127.0.0.1:{ENGINE_PORT}"
    backends = [{"name": "fast", "url": engine_url + "/v1", "kind": "openai", "models": {MODEL: "echo"},
                 "max_concurrency": 256}]
    runs: list[dict[str, Any]] = []
    engine = subprocess.Popen([sys.executable, "-m", "benchmarks.fast_engine", "--port", str(ENGINE_PORT)])
    try:
        _wait(engine_url)
        with running_postgres(bindir) as pg:
            database = pg.create_database()
            database_url = pg.url(database)
            env = {"FLEXI_AUTH": "on", "FLEXI_BACKENDS": json.dumps(backends), "FLEXI_DATABASE_URL": database_url,
                   "FLEXI_PSEUDONYM_KEY": secrets.token_hex(32), "FLEXI_ENERGY": "off"}
            with FlexiServer(port=REPLICA_PORTS[0], env=env) as a, FlexiServer(port=REPLICA_PORTS[1], env=env) as b, \
                    nginx(NGINX_PORTS[1], [REPLICA_PORTS[0]]) as one, nginx(NGINX_PORTS[2], list(REPLICA_PORTS)) as two:
                import os
                os.environ["FLEXI_PSEUDONYM_KEY"] = env["FLEXI_PSEUDONYM_KEY"]
                key = _provision(database_url, a.home)
                headers = f"Authorization: Bearer {key}\r\n".encode()
                urls = {1: one, 2: two}
                for round_no in range(args.rounds):
                    for n in ((1, 2) if round_no % 2 == 0 else (2, 1)):
                        busy = wait_for_quiet_cpu(timeout=60)
                        run = asyncio.run(_closed_loop(urls[n], headers, args.concurrency, args.seconds))
                        runs.append({"round": round_no, "replicas": n, "cpu_busy_before": round(busy, 2), **run})
                        print(f"round {round_no}: {n} replica(s) {run['rps']} req/s, p50 {run['p50_ms']} ms, "
                              f"errors {run['errors']} {run['first_error'] or ''}", flush=True)
                assert b.proc is not None
    finally:
        engine.terminate()
        engine.wait(10)

    rps = {n: statistics.mean(r["rps"] for r in runs if r["replicas"] == n) for n in (1, 2)}
    ratio = rps[2] / rps[1] if rps[1] else float("nan")
    summary = {"rps_one": round(rps[1], 1), "rps_two": round(rps[2], 1), "ratio": round(ratio, 3), "target": 1.8,
               "met": ratio >= 1.8, "errors": sum(r["errors"] for r in runs)}
    data = {"benchmark": "replicas", "seconds_per_phase": args.seconds, "rounds": args.rounds,
            "concurrency": args.concurrency, "body": BODY, "machine": machine(), "summary": summary, "runs": runs}
    lines = ["# Two Flexi replicas behind nginx against one (issue 14)", "",
             f"Closed loop of {args.concurrency} keep-alive clients sending short chat completions "
             f"(`POST /v1/chat/completions`, `max_tokens` 4) through nginx (`least_conn`) to Flexi replicas with "
             "access control on (API key, policy rule, quotas, usage record) sharing one PostgreSQL, in front of "
             f"a fast OpenAI-compatible engine (`benchmarks/fast_engine.py`); {args.seconds:.0f} s per phase, "
             f"{args.rounds} rounds, phases alternating between one and two replicas.", "",
             f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, {data['machine']['memory_gib']} GiB, "
             f"Python {data['machine']['python']}, {data['machine']['date']}. nginx, PostgreSQL, the engine and the "
             "load generator share the cores with the replicas.", "",
             "| | one replica | two replicas | two / one | target |", "|---|---|---|---|---|",
             f"| throughput (req/s, mean of rounds) | {rps[1]:.1f} | {rps[2]:.1f} | **{ratio:.2f}×** | ≥ 1.8× "
             f"({'met' if summary['met'] else '**missed**'}) |", "",
             "| round | replicas | requests | req/s | p50 | errors | CPU busy before |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['round']} | {r['replicas']} | {r['requests']} | {r['rps']} | {r['p50_ms']} ms | {r['errors']} | "
                     f"{r['cpu_busy_before']:.0%} |")
    lines += ["", "Reproduce: `python -m benchmarks.bench_replicas`", ""]
    write_results("replicas", data, "\n".join(lines))


if __name__ == "__main__":
    main()
