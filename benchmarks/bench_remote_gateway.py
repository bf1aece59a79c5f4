"""What Flexi adds in front of a remote engine (issue 14 target: p50 ≤ 1 ms, p99 ≤ 5 ms at 200 requests/s).

A fast OpenAI-compatible engine (`benchmarks.fast_engine`, its own process, answers in microseconds) is
served by Flexi as a remote backend (`kind = "openai"`), with access control on: an API key of a service
account with quotas and a model policy rule, so authentication, policy, quota admission, the remote backend's
fair queue and the usage record are all on the path. The reference peer is the same engine called
directly, in the same run: phases alternate (direct, Flexi, Flexi, direct, …), each an open loop of
`--rate` short chat completions per second (`POST /v1/chat/completions`, non-streaming) for `--seconds`.
Added = p50 (p99) through Flexi minus p50 (p99) direct.

The load comes from lean keep-alive connections (`bench_batching.LeanHttp`, a pool grown on demand), so
the client's own cost is small and the same on both paths. Flexi's `Server-Timing` header gives the
part of the time spent in its checks (authentication + gate).

    python -m benchmarks.bench_remote_gateway [--rate 200] [--seconds 15] [--rounds 2]

Writes benchmarks/results/remote_gateway.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

from benchmarks.bench_access import _provision as provision, _server_timing
from benchmarks.bench_batching import LeanHttp
from benchmarks.common import FlexiServer, machine, wait_for_quiet_cpu, write_results

ENGINE_PORT = 18080
FLEXI_PORT = 11486
MODEL = "echo:fast"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4}


def _provision(home: str) -> str:
    """A service account (as a Moodle site would have: one key for many people) with quotas and a policy
    rule allowing the remote model. A student's per-person cap (4 requests at once) would refuse an open
    loop of 200 requests/s as soon as one stall lets requests pile up; a service key may have 32."""
    return provision(home, subject="bench-service", role="service", pattern="echo*")


def _quantiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(values), n=100)
    return {"p50_ms": round(q[49], 3), "p95_ms": round(q[94], 3), "p99_ms": round(q[98], 3)}


class Pool:
    """Keep-alive connections, one request at a time each, opened as the open loop needs them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.idle: list[LeanHttp] = []

    async def post(self, path: str, body: dict[str, Any], headers: bytes) -> LeanHttp:
        conn = self.idle.pop() if self.idle else await LeanHttp.connect(self.url)
        try:
            await conn.post_json(path, body, headers)
        except BaseException:
            conn.close()
            raise
        self.idle.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


async def _open_loop(url: str, path: str, headers: bytes, rate: float, seconds: float, body: dict[str, Any]) -> dict[str, Any]:
    pool = Pool(url)
    latencies: list[float] = []
    checks: list[float] = []
    errors: list[str] = []

    async def one() -> None:
        t0 = time.perf_counter()
        try:
            conn = await pool.post(path, body, headers)
        except (RuntimeError, ConnectionError, OSError) as exc:
            errors.append(str(exc)[:200])
            return
        latencies.append((time.perf_counter() - t0) * 1000)
        checks.append(_server_timing(conn.last_headers.get("server-timing", "")))

    for _ in range(50):  # warm: connections, caches
        await one()
    latencies.clear()
    checks.clear()
    tasks = []
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    achieved = n / (time.perf_counter() - start)
    pool.close()
    return {"requests": n, "ok": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
            "achieved_rps": round(achieved, 1), **(_quantiles(latencies) if len(latencies) > 1 else {}),
            "checks_p50_ms": round(statistics.median(checks), 3) if any(checks) else None,
            "samples": latencies}


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
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--name", default="remote_gateway", help="result file name (e.g. for another --rate)")
    args = parser.parse_args()

    engine_url = f"http://127.0.0.1:{ENGINE_PORT}"
    engine = subprocess.Popen([sys.executable, "-m", "benchmarks.fast_engine", "--port", str(ENGINE_PORT)])
    backends = [{"name": "fast", "url": engine_url + "/v1", "kind": "openai", "models": {MODEL: "echo"}, "max_concurrency": 256}]
    samples: dict[str, list[float]] = {"direct": [], "flexi": []}
    runs: list[dict[str, Any]] = []
    try:
        _wait(engine_url)
        with FlexiServer(port=FLEXI_PORT, env={"FLEXI_AUTH": "on", "FLEXI_BACKENDS": json.dumps(backends)}) as flexi:
            key = _provision(flexi.home)
            paths = {"direct": (engine_url, b"", {**BODY, "model": "echo"}),
                     "flexi": (flexi.url, f"Authorization: Bearer {key}\r\n".encode(), BODY)}
            for round_no in range(args.rounds):
                for mode in (("direct", "flexi") if round_no % 2 == 0 else ("flexi", "direct")):
                    busy = wait_for_quiet_cpu(timeout=60)
                    url, headers, body = paths[mode]
                    run = asyncio.run(_open_loop(url, "/v1/chat/completions", headers, args.rate, args.seconds, body))
                    samples[mode] += run.pop("samples")
                    runs.append({"round": round_no, "path": mode, "cpu_busy_before": round(busy, 2), **run})
                    print(f"round {round_no} {mode:6s} {run['achieved_rps']} rps, errors {run['errors']}: p50 "
                          f"{run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, checks {run['checks_p50_ms']}", flush=True)
    finally:
        engine.terminate()
        engine.wait(10)

    direct, through = _quantiles(samples["direct"]), _quantiles(samples["flexi"])
    added = {q: round(through[q] - direct[q], 3) for q in ("p50_ms", "p95_ms", "p99_ms")}
    checks = [r["checks_p50_ms"] for r in runs if r["path"] == "flexi" and r["checks_p50_ms"] is not None]
    summary = {"direct": direct, "flexi": through, "added": added,
               "flexi_checks_p50_ms": round(statistics.median(checks), 3) if checks else None,
               "targets": {"added_p50_ms": 1.0, "added_p99_ms": 5.0},
               "met_p50": added["p50_ms"] <= 1.0, "met_p99": added["p99_ms"] <= 5.0,
               "errors": sum(r["errors"] for r in runs)}
    data = {"benchmark": "remote_gateway", "rate_rps": args.rate, "seconds_per_phase": args.seconds,
            "rounds": args.rounds, "body": BODY, "machine": machine(), "summary": summary, "runs": runs}
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    lines = ["# Flexi in front of a remote engine (issue 14)", "",
             f"Open loop, {args.rate:.0f} requests/s of short chat completions (`POST /v1/chat/completions`, "
             f"`max_tokens` 4, non-streaming), {args.seconds:.0f} s per phase, {args.rounds} rounds; phases alternate "
             "between calling a fast OpenAI-compatible engine (`benchmarks/fast_engine.py`) directly and through "
             "Flexi (`kind = \"openai\"` backend) with access control on (API key, policy rule, user and role "
             "quotas, usage record per request).", "",
             f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, {data['machine']['memory_gib']} GiB, "
             f"Python {data['machine']['python']}, {data['machine']['date']}. Engine, Flexi and the load generator "
             "share the 2 cores.", "",
             "| | direct | through Flexi | added | target |", "|---|---|---|---|---|",
             f"| p50 | {direct['p50_ms']:.2f} ms | {through['p50_ms']:.2f} ms | **{added['p50_ms']:+.2f} ms** | ≤ 1 ms "
             f"({verdict(summary['met_p50'])}) |",
             f"| p95 | {direct['p95_ms']:.2f} ms | {through['p95_ms']:.2f} ms | {added['p95_ms']:+.2f} ms | |",
             f"| p99 | {direct['p99_ms']:.2f} ms | {through['p99_ms']:.2f} ms | **{added['p99_ms']:+.2f} ms** | ≤ 5 ms "
             f"({verdict(summary['met_p99'])}) |", "",
             f"Flexi's own checks (authentication + gate, from `Server-Timing`): p50 {summary['flexi_checks_p50_ms']} ms. "
             f"Errors: {summary['errors']}.", "",
             "| round | path | achieved rps | ok | errors | p50 | p95 | p99 | CPU busy before |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['round']} | {r['path']} | {r['achieved_rps']} | {r['ok']} | {r['errors']} | {r['p50_ms']:.2f} | "
                     f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_busy_before']:.0%} |")
    lines += ["", f"Reproduce: `python -m benchmarks.bench_remote_gateway --rate {args.rate:g} --name {args.name}`", ""]
    write_results(args.name, data, "\n".join(lines))


if __name__ == "__main__":
    main()
