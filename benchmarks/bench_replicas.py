"""Two Flexi replicas behind nginx versus one (issue 14 target: ≥ 1.8× one replica's request throughput).

The setup of tests/deploy/test_replicas.py: PostgreSQL and redis-server started here, two `flexi serve`
with FLEXI_AUTH=on (an API key of a service account with quotas, so authentication, quota admission, the
Redis lease of the per-person cap and the usage record are on the path), and Debian's nginx. The model
is served by a fast OpenAI-compatible engine (`benchmarks/fast_engine.py`: a short answer with usage,
answered at once by a small asyncio server in its own process), so the gateway is what is measured, not a model.

Rounds alternate nginx with one upstream and nginx with both (1, 2, 2, 1, …), each a closed loop of
`--concurrency` clients for `--seconds`, from a load generator in its own process. The ratio is the
median two-replica throughput over the median one-replica throughput. On a machine with fewer cores
than replicas + nginx + load generator + engine, the ratio says more about the machine than about Flexi:
the core count is recorded next to it.

    python -m benchmarks.bench_replicas [--rounds 4] [--seconds 8] [--concurrency 32]

Writes benchmarks/results/replicas.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = 1.8
MODEL = "fast"


# --- the load generator -----------------------------------------------------------------------------
async def _load(url: str, key: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import httpx

    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 1}
    ok = failed = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async def worker() -> None:
            nonlocal ok, failed
            while time.perf_counter() < stop:
                r = await client.post("/v1/chat/completions", json=body)
                if r.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"ok": ok, "failed": failed, "seconds": elapsed, "rps": ok / elapsed}


def _run_load(url: str, key: str, concurrency: int, seconds: float) -> dict[str, Any]:
    """One closed-loop block from a separate process (so the load generator does not share Python with us)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_replicas", "--load", url, key, str(concurrency),
                          str(seconds)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--name", default="replicas")
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        url, key, concurrency, seconds = args.load
        print(json.dumps(asyncio.run(_load(url, key, int(concurrency), float(seconds)))))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    from benchmarks.common import machine, write_results
    from tests.access_helpers import ServerDB
    from tests.conftest import free_port, start_server, stop_server
    from tests.nginx import start_nginx
    from tests.pg import _pg_bin, running_postgres
    from tests.redis_server import running_redis

    root = Path(tempfile.mkdtemp(prefix="flexi-bench-replicas-"))
    engine_port = free_port()
    engine = subprocess.Popen([sys.executable, "-m", "benchmarks.fast_engine", "--port", str(engine_port)], cwd=ROOT)
    bindir = _pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    pseudonym_key = secrets.token_hex(32)
    os.environ["FLEXI_PSEUDONYM_KEY"] = pseudonym_key  # ServerDB pseudonymises like the replicas
    replicas = []
    try:
        with running_postgres(bindir) as pg, running_redis(root / "redis") as redis_server:
            database = pg.create_database()
            env = {"FLEXI_AUTH": "on", "FLEXI_DATABASE_URL": pg.url(database), "FLEXI_REDIS_URL": redis_server.url,
                   "FLEXI_PSEUDONYM_KEY": pseudonym_key, "FLEXI_TRUSTED_PROXIES": "127.0.0.1", "FLEXI_LOG_LEVEL": "warning",
                   "PYTHONPATH": str(ROOT)}
            config = (f'[[backends]]\nname = "fast"\nurl = "http://127.0.0.1:{engine_port}/v1"\nkind = "openai"\n'
                      f'models = ["{MODEL}"]\nmax_concurrency = 512\n')
            for name in ("a", "b"):
                home = root / name / "home"
                home.mkdir(parents=True)
                (home / "config.toml").write_text(config)
                replicas.append(start_server(home, env))
            db = ServerDB(replicas[0].home, pg.url(database))
            uid = db.add_user("bench-service", role="service")
            db.set_quota("user", uid, requests_per_minute=10**7, tokens_per_day=10**9, tokens_per_week=2 * 10**9)  # INTEGER columns
            key = db.add_key(uid)[1]
            db.close()
            one = start_nginx(root / "nginx-1", [replicas[0].url])
            two = start_nginx(root / "nginx-2", [r.url for r in replicas])
            _run_load(two.url, key, args.concurrency, 2.0)  # warm-up: connections, caches, both replicas
            blocks: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
            for i in range(args.rounds):
                for n in (("1", "2") if i % 2 == 0 else ("2", "1")):
                    result = _run_load((one if n == "1" else two).url, key, args.concurrency, args.seconds)
                    blocks[n].append(result)
                    print(f"round {i + 1}, {n} replica(s): {result['rps']:.0f} requests/s ({result['failed']} failed)",
                          flush=True)
            for proxy in (one, two):
                proxy.proc.terminate()
                proxy.proc.wait(10)
    finally:
        for replica in replicas:
            stop_server(replica)
        engine.terminate()
        engine.wait(10)
    rps = {n: statistics.median(b["rps"] for b in blocks[n]) for n in blocks}
    ratio = rps["2"] / rps["1"]
    data = {"machine": machine(), "target": TARGET, "ratio": ratio, "requests_per_second": rps, "blocks": blocks,
            "concurrency": args.concurrency, "seconds": args.seconds, "rounds": args.rounds}
    verdict = "met" if ratio >= TARGET else "not met"
    cores = data["machine"]["cores"]
    markdown = (f"# Two replicas versus one ({data['machine']['date']})\n\n"
                f"{cores} cores; nginx, two `flexi serve` (auth on, PostgreSQL, Redis), a fast OpenAI-compatible engine (`benchmarks/fast_engine.py`) "
                f"and the load generator ({args.concurrency} clients, closed loop, {args.rounds} rounds of "
                f"{args.seconds:.0f} s) share them.\n\n"
                "| replicas | requests/s (median) |\n|---|---|\n"
                f"| 1 | {rps['1']:.0f} |\n| 2 | {rps['2']:.0f} |\n\n"
                f"Ratio **{ratio:.2f}×** (target ≥ {TARGET}×: {verdict}).\n")
    write_results(args.name, data, markdown)


if __name__ == "__main__":
    main()
