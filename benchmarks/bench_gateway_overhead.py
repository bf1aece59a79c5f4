"""Gateway overhead before and after a change, in one run (issue 12: ≤ 2 ms p50, and no worse than before).

Gateway overhead = the time of a 1-token request over HTTP through Flexi minus the time of the same
generation sent straight to the model's runner over its Unix socket (the definition of
`bench_batching.gateway_overhead`). Measured for three endpoints (Ollama `/api/generate`, `/api/chat`,
OpenAI `/v1/chat/completions`), each with access control off (`FLEXI_AUTH=off`) and on (`FLEXI_AUTH=on`,
an API key of a user with quotas and a model policy rule, as in `bench_access`, so authentication, policy,
quota admission and the usage record are part of the path), for two trees:

- "before": a baseline git ref (default `035a857`, the commit before the issue-12 refactor), checked out
  with `git worktree add` into a temporary directory;
- "after": the tree this script lives in.

Each tree is served by its own `flexi serve` (started in that tree's directory with PYTHONPATH pointing to
it; its runner processes inherit both), so four servers run side by side, each with the model preloaded.
Rounds interleave the trees (before, after, after, before, …) and, inside, auth off/on, so drift of the
machine hits all cells equally; within a block HTTP and direct requests alternate in pairs (who goes first
alternating) and the overhead is the p50/p95 of the per-pair differences.

The direct path, robustly per tree: the runner protocol may differ between the trees (issue 12 makes it
typed), so each tree's direct requests are sent by a helper process that imports that tree's own code
(`benchmarks.bench_batching.runner_payload` builds the runner request from the tree's own rendering and
request building; `bench_batching.RunnerSocket` sends it in the tree's own wire format; trees older than
`RunnerSocket` speak the JSON-lines protocol of 035a857, handled by `LegacyRunnerSocket` below). The main
process sends the HTTP side with one lean keep-alive client (`bench_batching.LeanHttp`) for both trees, and
asks the helper for one direct request at a time; only the request itself is timed, inside the helper. All
three endpoints are compared with the direct generation of the `/api/generate` prompt: the chat endpoints
render the same prompt for one user message "Hi." (the prompt token counts are checked and recorded).
The API key is created by the same helper with the tree's own database code (`bench_access._provision`).

    python -m benchmarks.bench_gateway_overhead [--baseline 035a857] [--rounds 6] [--per-block 25]

Writes benchmarks/results/gateway_overhead.{json,md} (or `--name`). `--profile N` instead profiles the
"after" server under N back-to-back 1-token `/api/generate` requests with cProfile and prints the top costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUESTION = "Hi."
ENDPOINTS = ("/api/generate", "/api/chat", "/v1/chat/completions")
TARGET_MS = 2.0
NOISE_MS = 0.25  # an A/A run (both trees the same code, 150 pairs per cell) differed by up to 0.18 ms p50
BUSY_LIMIT = 0.15  # CPU share other processes may use before a block (common.wait_for_quiet_cpu's default)


def bodies(model: str) -> dict[str, dict[str, Any]]:
    """One-token, greedy, non-streaming requests with the same prompt, per endpoint."""
    messages = [{"role": "user", "content": QUESTION}]
    options = {"num_predict": 1, "temperature": 0}
    return {"/api/generate": {"model": model, "prompt": QUESTION, "stream": False, "keep_alive": -1, "options": options},
            "/api/chat": {"model": model, "messages": messages, "stream": False, "keep_alive": -1, "options": options},
            "/v1/chat/completions": {"model": model, "messages": messages, "max_tokens": 1, "temperature": 0}}


def prompt_tokens(endpoint: str, answer: dict[str, Any]) -> int:
    return answer["usage"]["prompt_tokens"] if endpoint.startswith("/v1/") else answer["prompt_eval_count"]


# --- the helper process: runs with one tree first on the path --------------------------------------------
class LegacyRunnerSocket:
    """The direct client for trees without `bench_batching.RunnerSocket`: the JSON-lines runner protocol
    of 035a857 (one object per line, events matched by id)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ids = itertools.count(1)

    @classmethod
    async def connect(cls, path: str) -> LegacyRunnerSocket:
        reader, writer = await asyncio.open_unix_connection(path, limit=64 * 1024 * 1024)
        return cls(reader, writer)

    async def generate(self, payload: dict[str, Any]) -> None:
        req_id = next(self.ids)
        self.writer.write(json.dumps({"op": "generate", "id": req_id, **payload}).encode() + b"\n")
        await self.writer.drain()
        while True:
            msg = json.loads(await self.reader.readline())
            if msg.get("id") == req_id and msg.get("ev") in ("done", "error"):
                if msg["ev"] == "error":
                    raise RuntimeError(f"runner error: {msg}")
                return


def helper_main(args: argparse.Namespace) -> None:
    """`--helper provision HOME`: print an API key. `--helper direct SOCKET`: answer each stdin line with the
    seconds one direct 1-token generation took (the tree's own payload and wire format)."""
    import flexi

    if not str(Path(flexi.__file__).resolve()).startswith(str(Path(args.tree).resolve())):
        sys.exit(f"helper imported flexi from {flexi.__file__}, not from {args.tree}")
    if args.helper == "provision":
        from benchmarks.bench_access import _provision

        print(_provision(args.target), flush=True)
        return
    from benchmarks import bench_batching as bb

    client_cls = getattr(bb, "RunnerSocket", LegacyRunnerSocket)
    payload = bb.runner_payload(bb.Prompts(), QUESTION)

    async def serve() -> None:
        client = await client_cls.connect(args.target)
        for _ in range(10):  # warm-up: prefix cache, connection
            await client.generate(payload)
        print(f"ready {client_cls.__name__} {flexi.__file__}", flush=True)
        for _ in sys.stdin:
            t0 = time.perf_counter()
            await client.generate(payload)
            print(time.perf_counter() - t0, flush=True)

    asyncio.run(serve())


def helper_command(tree: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return [sys.executable, str(Path(__file__).resolve()), "--tree", str(tree), "--helper", *args], env


# --- trees and servers ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[tuple[Path, str]]:
    """`git worktree add` of the baseline ref into a temporary directory; removed afterwards."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    parent = Path(tempfile.mkdtemp(prefix="flexi-bench-baseline-"))
    path = parent / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True,
                   capture_output=True)
    try:
        yield path, commit
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False,
                       capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


def tree_state(tree: Path) -> str:
    """Commit of the working tree, with `+changes` when it differs from it."""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


class Side:
    """One tree served twice (auth off and on), with one direct-path helper per runner."""

    def __init__(self, name: str, tree: Path, env: dict[str, str]) -> None:
        self.name, self.tree, self.env = name, tree, env
        self.stack = contextlib.ExitStack()
        self.servers: dict[str, Any] = {}
        self.headers: dict[str, bytes] = {"off": b"", "on": b""}
        self.helpers: dict[str, subprocess.Popen[str]] = {}
        self.helper_info: dict[str, str] = {}

    def __enter__(self) -> Side:
        from benchmarks.bench_batching import MODEL, free_port
        from benchmarks.common import FlexiServer

        import httpx

        try:
            for auth in ("off", "on"):
                srv = self.stack.enter_context(FlexiServer(port=free_port(), cwd=str(self.tree), env={
                    **self.env, "PYTHONPATH": str(self.tree), "FLEXI_AUTH": auth}))
                self.servers[auth] = srv
                headers = {}
                if auth == "on":
                    cmd, env = helper_command(self.tree, "provision", srv.home)
                    key = subprocess.run(cmd, env=env, cwd=self.tree, check=True, capture_output=True, text=True).stdout.strip()
                    self.headers["on"] = b"Authorization: Bearer %s\r\n" % key.encode()
                    headers = {"Authorization": f"Bearer {key}"}
                httpx.post(srv.url + "/api/generate", json={"model": MODEL, "keep_alive": -1}, headers=headers,
                           timeout=120).raise_for_status()
                sockets = glob.glob(str(Path(srv.home) / "run" / "*.sock"))
                if len(sockets) != 1:
                    raise RuntimeError(f"expected one runner socket in {srv.home}/run, found {sockets}")
                cmd, env = helper_command(self.tree, "direct", sockets[0])
                proc = subprocess.Popen(cmd, env=env, cwd=self.tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                self.stack.callback(self._end, proc)
                self.helpers[auth] = proc
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line.startswith("ready "):
                    raise RuntimeError(f"{self.name}: the direct helper did not start (answered {line!r})")
                self.helper_info[auth] = line.split(" ", 1)[1].strip()
        except BaseException:
            self.stack.close()
            raise
        return self

    @staticmethod
    def _end(proc: subprocess.Popen[str]) -> None:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def direct(self, auth: str) -> float:
        proc = self.helpers[auth]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        return float(proc.stdout.readline())


# --- measuring -----------------------------------------------------------------------------------------------
def server_timing(header: str) -> dict[str, float]:
    """Flexi's Server-Timing header (`auth;dur=…, gate;dur=…`) as {name: ms}."""
    out = {}
    for part in header.split(","):
        name, *fields = [f.strip() for f in part.split(";")]
        for f in fields:
            if f.startswith("dur="):
                out[name] = float(f[4:])
    return out


async def block(side: Side, auth: str, model: str, per_block: int, samples: dict[str, dict[str, list[float]]]) -> None:
    """`per_block` pairs per endpoint, endpoints in turn; in each pair HTTP and direct alternate who goes first."""
    from benchmarks.bench_batching import LeanHttp

    url = side.servers[auth].url
    lean = await LeanHttp.connect(url)
    reqs = bodies(model)

    async def http(endpoint: str) -> float:
        """One timed request; uvicorn may close a keep-alive connection when the machine is overloaded
        (its 5 s idle timer), then the attempt is repeated on a new connection and not counted."""
        nonlocal lean
        for attempt in range(3):
            t0 = time.perf_counter()
            try:
                await lean.post_json(endpoint, reqs[endpoint], side.headers[auth])
                return time.perf_counter() - t0
            except (ConnectionError, asyncio.IncompleteReadError):
                lean.close()
                lean = await LeanHttp.connect(url)
                await lean.post_json(endpoint, reqs[endpoint], side.headers[auth])  # warm the new connection
        raise ConnectionError(f"{url}{endpoint}: the connection closed three times")

    try:
        for endpoint in ENDPOINTS:  # warm this connection and path
            await http(endpoint)
        for i in range(per_block):
            for endpoint in ENDPOINTS:
                s = samples[endpoint]
                direct_first = (i + ENDPOINTS.index(endpoint)) % 2 == 1
                if direct_first:
                    d = side.direct(auth)
                h = await http(endpoint)
                if not direct_first:
                    d = side.direct(auth)
                timing = server_timing(lean.last_headers.get("server-timing", ""))
                s["http_ms"].append(h * 1000)
                s["direct_ms"].append(d * 1000)
                s["added_ms"].append((h - d) * 1000)
                s["auth_ms"].append(timing.get("auth", float("nan")))
                s["gate_ms"].append(timing.get("gate", float("nan")))
    finally:
        lean.close()


def quantile(values: list[float], q: int) -> float:
    """q-th percentile (1..99), nan-safe."""
    vals = sorted(v for v in values if v == v)
    if len(vals) < 2:
        return vals[0] if vals else float("nan")
    return statistics.quantiles(vals, n=100, method="inclusive")[q - 1]


def summarize(samples: dict[str, list[float]]) -> dict[str, Any]:
    return {"n": len(samples["added_ms"]),
            "p50_added_ms": round(quantile(samples["added_ms"], 50), 3),
            "p95_added_ms": round(quantile(samples["added_ms"], 95), 3),
            "p50_http_ms": round(quantile(samples["http_ms"], 50), 3),
            "p50_direct_ms": round(quantile(samples["direct_ms"], 50), 3),
            "p50_auth_ms": round(quantile(samples["auth_ms"], 50), 3),
            "p50_gate_ms": round(quantile(samples["gate_ms"], 50), 3)}


def check_prompts(sides: list[Side], model: str) -> dict[str, dict[str, int]]:
    """Prompt tokens per endpoint on each tree: all must equal /api/generate's (the direct request's)."""
    import httpx

    out = {}
    for side in sides:
        srv = side.servers["off"]
        counts = {e: prompt_tokens(e, httpx.post(srv.url + e, json=b, timeout=60).json()) for e, b in bodies(model).items()}
        if len(set(counts.values())) != 1:
            print(f"  warning: {side.name}: prompt tokens differ between endpoints: {counts}", file=sys.stderr, flush=True)
        out[side.name] = counts
    return out


def machine_now() -> dict[str, Any]:
    from benchmarks.common import machine

    m = machine()
    m["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return m


def markdown(data: dict[str, Any], reproduce: str) -> str:
    m = data["machine"]
    sides = data["sides"]
    lines = ["# Gateway overhead before and after (issue 12)\n",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
             f"llama-cpp-python {m['llama_cpp_python']}, {m['date']}; load average at the start "
             f"{' / '.join(str(x) for x in m['load_average'])} (1/5/15 min), at the end "
             f"{' / '.join(str(x) for x in data['load_average_end'])}; CPU busy before the blocks (other processes): "
             f"p50 {data['cpu_busy_before_p50']:.0%}, max {data['cpu_busy_before_max']:.0%}.",
             f"\nBefore: `{sides['before']['ref']}` ({sides['before']['commit'][:9]}); after: the working tree "
             f"`{sides['after']['commit']}`. Model {data['model']}, {data['rounds']} rounds × {data['per_block']} pairs per "
             f"endpoint and auth mode ({data['rounds'] * data['per_block']} pairs per cell), rounds interleaving the trees. "
             "Added = HTTP 1-token request (lean keep-alive client) minus the same generation sent straight to the "
             "runner socket with the tree's own client code, per pair. Auth on: API key of a user with quotas and a "
             "policy rule (authentication, policy, quota admission and usage record on the path); `auth`/`gate`: "
             "the server's own `Server-Timing` figures.\n",
             "| endpoint | auth | before p50 / p95 added | after p50 / p95 added | after − before (p50) | "
             "HTTP p50 before / after | direct p50 before / after | auth + gate p50 after | target ≤ 2 ms p50 (after) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in data["table"]:
        b, a = row["before"], row["after"]
        lines.append(f"| `{row['endpoint']}` | {row['auth']} | {b['p50_added_ms']:.2f} / {b['p95_added_ms']:.2f} ms | "
                     f"**{a['p50_added_ms']:.2f}** / {a['p95_added_ms']:.2f} ms | {row['delta_p50_ms']:+.2f} ms | "
                     f"{b['p50_http_ms']:.2f} / {a['p50_http_ms']:.2f} ms | {b['p50_direct_ms']:.2f} / {a['p50_direct_ms']:.2f} ms | "
                     f"{a['p50_auth_ms']:.2f} + {a['p50_gate_ms']:.2f} ms | {'met' if row['met'] else '**missed**'} |")
    if data["cpu_busy_before_max"] > BUSY_LIMIT:
        lines.append(f"\n**Disturbed run**: other processes kept the CPU more than {BUSY_LIMIT:.0%} busy before some "
                     "blocks (see `blocks` in the JSON); the figures do not decide the target.")
    lines.append(f"\nAll targets met: {'yes' if data['all_met'] else '**no**'}; after no slower than before "
                 f"(p50, within the noise of {NOISE_MS} ms) in {sum(r['not_slower'] for r in data['table'])} of {len(data['table'])} cells.")
    lines.append("\nPrompt tokens per endpoint (must be equal, the direct request uses /api/generate's prompt): "
                 + "; ".join(f"{k}: {v}" for k, v in data["prompt_tokens"].items()) + ".")
    lines.append(f"\nReproduce: `{reproduce}`\n")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    from benchmarks.bench_batching import FLEXI_PARALLEL, MODEL, SLOT_CTX, THREADS
    from benchmarks.common import wait_for_quiet_cpu, write_results

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so every server and tree is cleaned up
    env = {"FLEXI_NUM_PARALLEL": str(FLEXI_PARALLEL), "FLEXI_NUM_THREADS": str(THREADS),
           "FLEXI_CONTEXT_LENGTH": str(SLOT_CTX), "FLEXI_KEEP_ALIVE": "-1"}
    started = time.monotonic()
    mach = machine_now()
    samples = {s: {a: {e: {k: [] for k in ("http_ms", "direct_ms", "added_ms", "auth_ms", "gate_ms")} for e in ENDPOINTS}
                   for a in ("off", "on")} for s in ("before", "after")}
    blocks = []
    with baseline_tree(args.baseline) as (base_path, base_commit), \
            Side("before", base_path, env) as before, Side("after", ROOT, env) as after:
        sides = {"before": before, "after": after}
        print(f"servers up: before = {base_commit[:9]} ({before.helper_info['off']}), "
              f"after = {tree_state(ROOT)} ({after.helper_info['off']})", flush=True)
        prompts = check_prompts([before, after], MODEL)
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for name in order:
                for auth in (("off", "on") if (r // 2) % 2 == 0 else ("on", "off")):
                    busy = wait_for_quiet_cpu(timeout=args.quiet_timeout)
                    cell = samples[name][auth]
                    n0 = len(cell[ENDPOINTS[0]]["added_ms"])
                    asyncio.run(block(sides[name], auth, MODEL, args.per_block, cell))
                    p50 = {e: statistics.median(cell[e]["added_ms"][n0:]) for e in ENDPOINTS}
                    blocks.append({"round": r, "side": name, "auth": auth, "cpu_busy_before": round(busy, 3),
                                   "p50_added_ms": {e: round(v, 3) for e, v in p50.items()}})
                    print(f"round {r} {name:6s} auth {auth:3s} (CPU {busy:.0%} busy before): added p50 "
                          + ", ".join(f"{e} {v:.2f} ms" for e, v in p50.items()), flush=True)
        after_state = tree_state(ROOT)
    table = []
    for auth in ("off", "on"):
        for e in ENDPOINTS:
            b, a = summarize(samples["before"][auth][e]), summarize(samples["after"][auth][e])
            delta = a["p50_added_ms"] - b["p50_added_ms"]
            table.append({"endpoint": e, "auth": auth, "before": b, "after": a, "delta_p50_ms": round(delta, 3),
                          "met": a["p50_added_ms"] <= TARGET_MS, "not_slower": delta <= NOISE_MS})
    busies = [b["cpu_busy_before"] for b in blocks]
    data = {"benchmark": "gateway_overhead", "machine": mach, "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "cpu_busy_before_p50": statistics.median(busies), "cpu_busy_before_max": max(busies),
            "model": MODEL, "env": env, "rounds": args.rounds, "per_block": args.per_block, "target_p50_ms": TARGET_MS,
            "duration_s": round(time.monotonic() - started, 1),
            "sides": {"before": {"ref": args.baseline, "commit": base_commit}, "after": {"commit": after_state}},
            "direct_clients": {n: s.helper_info for n, s in sides.items()},
            "prompt_tokens": prompts, "table": table, "all_met": all(r["met"] for r in table), "blocks": blocks,
            "samples": {s: {a: {e: {k: [round(v, 3) for v in vals] for k, vals in cell.items()} for e, cell in modes.items()}
                            for a, modes in per.items()} for s, per in samples.items()}}
    reproduce = "python -m benchmarks.bench_gateway_overhead" + \
        (f" --baseline {args.baseline}" if args.baseline != "035a857" else "") + \
        (f" --rounds {args.rounds}" if args.rounds != 6 else "") + \
        (f" --per-block {args.per_block}" if args.per_block != 25 else "") + \
        (f" --name {args.name}" if args.name != "gateway_overhead" else "")
    write_results(args.name, data, markdown(data, reproduce))


# --- profile of the "after" server ---------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def profile(args: argparse.Namespace) -> None:
    """Where the server's time per request goes, for the "after" tree, under N back-to-back 1-token requests.

    1. Without a profiler: CPU seconds per request of the server process (all threads) and of the runner
       (/proc utime + stime), and the server's own Server-Timing (auth, gate) figures.
    2. The same N requests again under cProfile, switched on and off by signals so start-up and warm-up are
       not in it, timed with the main thread's CPU time (not wall time: on a busy 2-core machine wall time
       would charge whatever function runs when the process is descheduled). Worker threads (SQLite writer,
       anyio threads) are not in the profile; cProfile's own cost inflates functions with many small calls,
       so read its figures as shares, and step 1 as the absolute cost."""
    import pstats

    import httpx

    from benchmarks.bench_batching import FLEXI_PARALLEL, MODEL, SLOT_CTX, THREADS, LeanHttp, free_port
    from benchmarks.common import FlexiServer

    out = Path(tempfile.mkdtemp(prefix="flexi-bench-prof-")) / "server.prof"
    env = {"FLEXI_NUM_PARALLEL": str(FLEXI_PARALLEL), "FLEXI_NUM_THREADS": str(THREADS),
           "FLEXI_CONTEXT_LENGTH": str(SLOT_CTX), "FLEXI_KEEP_ALIVE": "-1", "PYTHONPATH": str(ROOT),
           "FLEXI_AUTH": args.profile_auth}
    code = ("import cProfile, runpy, signal, sys, time; sys.argv = ['flexi', 'serve']\n"
            "prof = cProfile.Profile(time.thread_time)\n"
            "signal.signal(signal.SIGUSR1, lambda *_: prof.enable())\n"
            f"signal.signal(signal.SIGUSR2, lambda *_: (prof.disable(), prof.dump_stats({str(out)!r})))\n"
            "runpy.run_module('flexi', run_name='__main__', alter_sys=True)")
    srv = FlexiServer(port=free_port(), cwd=str(ROOT), env=env, python_args=("-c", code))
    with srv:
        assert srv.proc is not None
        pid = srv.proc.pid
        header, headers = b"", {}
        if args.profile_auth == "on":
            cmd, henv = helper_command(ROOT, "provision", srv.home)
            key = subprocess.run(cmd, env=henv, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
            header, headers = b"Authorization: Bearer %s\r\n" % key.encode(), {"Authorization": f"Bearer {key}"}
        httpx.post(srv.url + "/api/generate", json={"model": MODEL, "keep_alive": -1}, timeout=120,
                   headers=headers).raise_for_status()
        (runner,) = children(pid)
        body = bodies(MODEL)[args.profile_endpoint]

        async def drive(n: int, timings: list[dict[str, float]]) -> float:
            lean = await LeanHttp.connect(srv.url)
            t0 = time.perf_counter()
            for _ in range(n):
                await lean.post_json(args.profile_endpoint, body, header)
                timings.append(server_timing(lean.last_headers.get("server-timing", "")))
            lean.close()
            return time.perf_counter() - t0

        asyncio.run(drive(30, []))  # warm-up
        timings: list[dict[str, float]] = []
        c_srv, c_run = cpu_seconds(pid), cpu_seconds(runner)
        wall = asyncio.run(drive(args.profile, timings))
        d_srv, d_run = cpu_seconds(pid) - c_srv, cpu_seconds(runner) - c_run
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.5)
        wall_prof = asyncio.run(drive(args.profile, []))
        os.kill(pid, signal.SIGUSR2)
        time.sleep(2)
    n = args.profile
    print(f"{n} requests to {args.profile_endpoint} (auth {args.profile_auth}), load average {os.getloadavg()[0]:.2f}:\n"
          f"  without profiler: {wall / n * 1000:.2f} ms per request wall; CPU per request: server "
          f"{d_srv / n * 1000:.2f} ms (all threads), runner {d_run / n * 1000:.2f} ms; Server-Timing p50 auth "
          f"{quantile([t.get('auth', float('nan')) for t in timings], 50):.3f} ms, gate "
          f"{quantile([t.get('gate', float('nan')) for t in timings], 50):.3f} ms\n"
          f"  under cProfile: {wall_prof / n * 1000:.2f} ms per request wall; profile {out}", flush=True)
    stats = pstats.Stats(str(out))
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"  main-thread CPU under cProfile: {total / n * 1000:.2f} ms per request\n")
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = file.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        rows.append((ct, tt, nc, f"{short}:{line}({fn})"))
    for title, key in (("by cumulative time", 0), ("by own time", 1)):
        print(f"top {title} (ms per request; share of the main thread's profiled CPU):")
        for row in sorted(rows, key=lambda r: r[key], reverse=True)[:args.profile_top]:
            print(f"  {row[0] / n * 1000:7.3f} cum {row[1] / n * 1000:7.3f} own {row[key] / total:6.1%} "
                  f"{row[2] / n:5.1f} calls/req  {row[3][:130]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="035a857", help="git ref of the 'before' tree")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-block", type=int, default=25, help="pairs per endpoint in each block")
    parser.add_argument("--quiet-timeout", type=float, default=120.0,
                        help="seconds to wait before each block for other processes to leave the CPU")
    parser.add_argument("--name", default="gateway_overhead", help="results file name under benchmarks/results/")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="instead: cProfile the 'after' server under N back-to-back requests")
    parser.add_argument("--profile-endpoint", default="/api/generate", choices=ENDPOINTS)
    parser.add_argument("--profile-auth", default="on", choices=("on", "off"))
    parser.add_argument("--profile-top", type=int, default=45, help="rows of the profile to print")
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--helper", choices=("provision", "direct"), help=argparse.SUPPRESS)
    parser.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.helper:
        helper_main(args)
    elif args.profile:
        profile(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
