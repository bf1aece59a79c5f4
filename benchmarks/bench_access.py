"""What campus access costs per request: authentication, model policy and quota
checks (issue 4 target: ≤ 1 ms added p50 at 200 requests/s).

Two real servers on the same machine and model: the reference peer with
FLEXI_AUTH=off (no key, no quota, no usage record) and one with FLEXI_AUTH=on,
an API key, a model policy rule and user + role quotas (so every request reads
the key, decides the policy, reserves in the quota counters and writes a
usage record). Both get the same open-loop load of 200 requests/s; phases
alternate off/on to spread machine noise evenly. Every 10th request is a
one-token `POST /api/generate` (the whole gate: policy, quota reservation,
usage record, around a real but tiny model call: the 2-core machine cannot
run 200 model calls a second), the others `GET /api/tags` (authentication and
the policy filter).

    python -m benchmarks.bench_access [--seconds 15] [--rounds 2] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import FlexiServer, machine, wait_for_quiet_cpu, write_results

MODEL = "smollm2:135m"
REQUESTS = {
    "generate": ("POST", "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False,
                                           "options": {"num_predict": 1, "temperature": 0}}),
    "tags": ("GET", "/api/tags", None),
}
GENERATE_EVERY = 10


def _provision(home: str, subject: str = "bench-student", role: str = "student", pattern: str = "smollm2*",
               database_url: str | None = None) -> str:
    """A person (`role`) with a key, quotas and a policy rule (`pattern`) in the auth-on server's database."""
    from sqlalchemy.orm import Session

    from flexi.db.apikeys import create_key
    from flexi.db.engine import make_engine
    from flexi.db.models import ModelPolicy, Quota, RoleQuota, User
    from flexi.db.pseudonym import load_key, pseudonymize

    engine = make_engine(database_url, Path(home))
    with Session(engine) as s:
        user = User(subject=subject, pseudonym=pseudonymize(subject, load_key(Path(home))), role=role)
        s.add(user)
        s.flush()
        s.add(Quota(subject_kind="user", subject_id=user.id, requests_per_minute=10**7, tokens_per_day=10**12,
                    tokens_per_week=10**13))
        s.add(RoleQuota(role=role, requests_per_minute=10**7))
        s.add(ModelPolicy(pattern=pattern, allowed_roles=["student", "teacher"] if role == "student" else [role]))
        key = create_key(s, user.id, "bench").key
        s.commit()
    engine.dispose()
    return key


def _server_timing(header: str) -> float:
    """Sum of the durations in Flexi's Server-Timing header (auth + gate), in ms."""
    total = 0.0
    for part in header.split(","):
        for field in part.split(";"):
            if field.strip().startswith("dur="):
                total += float(field.strip()[4:])
    return total


def _in_process(n: int = 1000) -> dict[str, float]:
    """The checks alone, without HTTP and without a model competing for the CPU: authentication
    (key lookup) and gate admission (policy + quota reservation) on a fresh SQLite database."""
    import tempfile

    from starlette.requests import Request

    from flexi.access.credentials import Credential
    from flexi.access.service import AccessService
    from flexi.config import load_settings

    home = tempfile.mkdtemp(prefix="flexi-bench-access-")
    service = AccessService.open(load_settings(home=Path(home), auth="on"))
    credential = Credential("key", _provision(home))
    principal = service.authn.authenticate(credential)
    assert principal is not None
    request = Request({"type": "http", "headers": [], "method": "POST", "path": "/api/generate", "query_string": b"",
                       "server": ("bench", 0), "scheme": "http", "state": {"principal": principal}})

    async def measure() -> dict[str, float]:
        auth, admit = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            service.authn.authenticate(credential)
            t1 = time.perf_counter()
            service.gate.limits(principal, MODEL)
            await service.gate._admit(request, principal, 30, 1, MODEL)
            t2 = time.perf_counter()
            auth.append((t1 - t0) * 1000)
            admit.append((t2 - t1) * 1000)
        return {"auth_p50_ms": round(statistics.median(auth), 3), "policy_and_quota_p50_ms": round(statistics.median(admit), 3),
                "total_p50_ms": round(statistics.median([a + b for a, b in zip(auth, admit)]), 3)}

    try:
        return asyncio.run(measure())
    finally:
        service.engine.dispose()


def _quantiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(values), n=100) if len(values) > 1 else [float("nan")] * 99
    return {"p50_ms": round(q[49], 3), "p95_ms": round(q[94], 3), "p99_ms": round(q[98], 3)}


async def _open_loop(url: str, headers: dict[str, str], rate: float, seconds: float) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {k: [] for k in REQUESTS}
    access: dict[str, list[float]] = {k: [] for k in REQUESTS}
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as client:
        async def one(kind: str) -> None:
            nonlocal errors
            method, path, body = REQUESTS[kind]
            t0 = time.perf_counter()
            r = await client.request(method, path, json=body)
            if r.status_code == 200:
                latencies[kind].append((time.perf_counter() - t0) * 1000)
                access[kind].append(_server_timing(r.headers.get("server-timing", "")))
            else:
                errors += 1

        for i in range(40):  # warm connections, the runner and the caches
            await one("generate" if i % 2 else "tags")
        for values in (*latencies.values(), *access.values()):
            values.clear()
        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one("generate" if i % GENERATE_EVERY == 0 else "tags")))
        await asyncio.gather(*tasks)
        achieved = n / (time.perf_counter() - start)
    return {"requests": n, "errors": errors, "achieved_rps": round(achieved, 1),
            **{kind: {"ok": len(v), **_quantiles(v), "access_p50_ms": round(statistics.median(access[kind]), 3) if access[kind] else None}
               for kind, v in latencies.items()}, "samples": latencies, "access_samples": access}


def _split(rate: float) -> None:
    """Which part costs what end to end: auth alone versus auth + quota, interleaved twice."""
    from tests.access_helpers import ServerDB

    with FlexiServer(port=11497, env={"FLEXI_AUTH": "off"}) as off, FlexiServer(port=11498, env={"FLEXI_AUTH": "on"}) as on:
        db = ServerDB(Path(on.home))
        _, plain_key = db.add_key(db.add_user("no-quota", role="teacher"))
        db.close()
        modes = {"off": (off.url, {}), "on, no quota": (on.url, {"Authorization": f"Bearer {plain_key}"}),
                 "on, quota": (on.url, {"Authorization": f"Bearer {_provision(on.home)}"})}
        for _ in range(2):
            for mode, (url, headers) in modes.items():
                run = asyncio.run(_open_loop(url, headers, rate, 10))
                print(f"{mode:13s} generate p50 {run['generate']['p50_ms']:.2f} ms (checks {run['generate']['access_p50_ms']} ms), "
                      f"tags p50 {run['tags']['p50_ms']:.2f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--split", action="store_true",
                        help="instead: interleave auth off / on without quota / on with quota (10 s phases) and print")
    args = parser.parse_args()
    if args.split:
        _split(args.rate)
        return

    results: dict[str, dict[str, list[float]]] = {k: {"off": [], "on": []} for k in REQUESTS}
    measured: dict[str, dict[str, list[float]]] = {k: {"off": [], "on": []} for k in REQUESTS}
    runs: list[dict[str, Any]] = []
    with FlexiServer(port=11497, env={"FLEXI_AUTH": "off"}) as off, FlexiServer(port=11498, env={"FLEXI_AUTH": "on"}) as on:
        headers = {"off": {}, "on": {"Authorization": f"Bearer {_provision(on.home)}"}}
        servers = {"off": off.url, "on": on.url}
        for round_no in range(args.rounds):
            for mode in (("off", "on") if round_no % 2 == 0 else ("on", "off")):
                busy = wait_for_quiet_cpu()
                run = asyncio.run(_open_loop(servers[mode], headers[mode], args.rate, args.seconds))
                for kind, values in run.pop("samples").items():
                    results[kind][mode].extend(values)
                for kind, values in run.pop("access_samples").items():
                    measured[kind][mode].extend(values)
                runs.append({"round": round_no, "auth": mode, "cpu_busy_before": round(busy, 2), **run})
                print(f"round {round_no} auth={mode:3s} at {run['achieved_rps']} rps, errors {run['errors']}: " + ", ".join(
                    f"{k} p50 {run[k]['p50_ms']:.2f} ms p95 {run[k]['p95_ms']:.2f} ms" for k in REQUESTS), flush=True)

    summary = {}
    for kind, modes in results.items():
        p50 = {m: statistics.median(v) for m, v in modes.items()}
        inside = statistics.median(measured[kind]["on"])
        summary[kind] = {"p50_off_ms": round(p50["off"], 3), "p50_on_ms": round(p50["on"], 3),
                         "added_p50_ms": round(p50["on"] - p50["off"], 3),
                         "server_measured_access_p50_ms": round(inside, 3),
                         "server_measured_access_p95_ms": round(statistics.quantiles(measured[kind]["on"], n=20)[18], 3),
                         "target_ms": 1.0, "met_end_to_end": p50["on"] - p50["off"] <= 1.0, "met_server_measured": inside <= 1.0}
    alone = _in_process()
    print(f"in process, no HTTP, no model: {alone}", flush=True)
    data = {"benchmark": "access_overhead", "in_process": alone, "rate_rps": args.rate, "seconds_per_phase": args.seconds,
            "rounds": args.rounds, "machine": machine(), "summary": summary, "runs": runs}
    lines = ["# Cost of campus access per request (issue 4)", "",
             f"Open-loop {args.rate:.0f} requests/s, {args.seconds:.0f} s per phase, {args.rounds} rounds, phases "
             "alternating between a server with FLEXI_AUTH=off (reference) and one with FLEXI_AUTH=on "
             "(API key, policy rule, user and role quotas, usage record per request).", "",
             f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, {data['machine']['memory_gib']} GiB, "
             f"{data['machine']['date']}.", "",
             "Two measures: the end-to-end difference of p50 latencies between the two servers (includes "
             "everything auth-on costs the machine, e.g. CPU the runner then lacks on 2 cores), and the time "
             "the checks themselves took inside the server, from Flexi's `Server-Timing` header "
             "(authentication in the middleware + policy and quota admission in the gate).", "",
             "| request | p50 auth off | p50 auth on | added p50 end to end | checks inside the server p50 / p95 | target ≤ 1 ms |",
             "|---|---|---|---|---|---|"]
    for kind, s in summary.items():
        verdict = ("met" if s["met_end_to_end"] else "missed end to end") + (
            ", met inside the server" if s["met_server_measured"] else ", MISSED inside the server")
        lines.append(f"| `{' '.join(REQUESTS[kind][:2])}` | {s['p50_off_ms']:.2f} ms | {s['p50_on_ms']:.2f} ms | "
                     f"**{s['added_p50_ms']:+.2f} ms** | {s['server_measured_access_p50_ms']:.2f} / "
                     f"{s['server_measured_access_p95_ms']:.2f} ms | {verdict} |")
    lines += ["", f"The checks alone (in process, no HTTP, no model competing for the 2 cores, {1000} iterations): "
              f"authentication {alone['auth_p50_ms']:.3f} ms + policy and quota admission "
              f"{alone['policy_and_quota_p50_ms']:.3f} ms = **{alone['total_p50_ms']:.3f} ms p50**.", "",
              "Per phase (ms):", "", "| round | auth | achieved rps | errors | request | n | p50 | p95 | p99 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for kind in REQUESTS:
            k = r[kind]
            lines.append(f"| {r['round']} | {r['auth']} | {r['achieved_rps']} | {r['errors']} | {kind} | {k['ok']} | "
                         f"{k['p50_ms']:.2f} | {k['p95_ms']:.2f} | {k['p99_ms']:.2f} |")
    lines += ["", "Reproduce: `python -m benchmarks.bench_access`", ""]
    write_results("access_overhead", data, "\n".join(lines))


if __name__ == "__main__":
    main()
