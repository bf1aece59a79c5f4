"""What Prometheus metrics cost in throughput (issue 14 target: ≤ 1 % throughput).

Two real servers on the same machine and model, identical but for FLEXI_METRICS (on / off); phases
alternate between them (ABBA order per round pair) so machine noise falls on both alike. Each phase
is a closed loop of `--concurrency` clients sending short completions (`POST /api/generate`, a few
tokens); while the metrics server is measured, a scraper reads `/metrics` every `--scrape` seconds,
as Prometheus would (more often than its default 15 s, to be pessimistic).

A 2-core machine shared with other jobs moves throughput by a few per cent between phases, more than
the effect measured. So the benchmark also measures what metrics add per request in process, without
HTTP or a model: the gate's observation call (`Metrics.generation`, every counter and histogram a
request touches) and a scrape, and relates them to the measured time per request.

    python -m benchmarks.bench_metrics_cost [--seconds 20] [--rounds 4] [--concurrency 4] [--scrape 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from typing import Any

import httpx

from benchmarks.common import FlexiServer, machine, wait_for_quiet_cpu, write_results

MODEL = "smollm2:135m"
BODY = {"model": MODEL, "prompt": "Name a colour.", "stream": False, "options": {"num_predict": 4, "temperature": 0}}


async def _closed_loop(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    done, errors = 0, 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(2 * concurrency):  # warm: model loaded, connections open
            await client.post("/api/generate", json=BODY)
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop:
                r = await client.post("/api/generate", json=BODY)
                if r.status_code == 200:
                    done += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"requests": done, "errors": errors, "seconds": round(elapsed, 2), "rps": round(done / elapsed, 3)}


def _scraper(url: str, every: float, stop: threading.Event, scrapes: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.wait(every):
            t0 = time.perf_counter()
            if client.get("/metrics").status_code == 200:
                scrapes.append((time.perf_counter() - t0) * 1000)


def _in_process(n: int = 20000) -> dict[str, float]:
    """The observation a finished request makes, and one scrape, without HTTP or a model."""
    from flexi.observability.metrics import LoadedModel, Metrics, QueueState

    class View:
        def loaded_models(self) -> list[LoadedModel]:
            return [LoadedModel(MODEL, 300 * 2**20, 1, 2)]

        def queue_states(self) -> list[QueueState]:
            return [QueueState(MODEL, 2, 3, 4)]

        def runner_restarts(self) -> dict[str, int]:
            return {}

    metrics = Metrics()
    metrics.watch(View())
    t0 = time.perf_counter()
    for i in range(n):
        metrics.generation(model=MODEL, endpoint="/api/generate", course_id=i % 20, status="ok", error=None,
                           prompt_tokens=30, output_tokens=4, ttft=0.2, tpot=0.03, duration=0.3, queue_wait=0.001)
    per_request_us = (time.perf_counter() - t0) / n * 1e6
    scrapes = []
    for _ in range(200):
        t1 = time.perf_counter()
        metrics.exposition()
        scrapes.append((time.perf_counter() - t1) * 1000)
    return {"observe_per_request_us": round(per_request_us, 2), "scrape_p50_ms": round(statistics.median(scrapes), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=4, help="phases per server (alternating ABBA)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--scrape", type=float, default=1.0, help="seconds between scrapes of the metrics server")
    args = parser.parse_args()

    alone = _in_process()
    print(f"in process: {alone}", flush=True)
    rps: dict[str, list[float]] = {"on": [], "off": []}
    runs: list[dict[str, Any]] = []
    scrape_ms: list[float] = []
    with FlexiServer(port=11487, env={"FLEXI_METRICS": "on"}) as on, FlexiServer(port=11488, env={"FLEXI_METRICS": "off"}) as off:
        servers = {"on": on.url, "off": off.url}
        for round_no in range(args.rounds):
            order = ("off", "on") if round_no % 4 in (0, 3) else ("on", "off")
            for mode in order:
                busy = wait_for_quiet_cpu(timeout=30)
                stop, scrapes = threading.Event(), []
                scraper = threading.Thread(target=_scraper, args=(servers[mode], args.scrape, stop, scrapes))
                if mode == "on":
                    scraper.start()
                run = asyncio.run(_closed_loop(servers[mode], args.concurrency, args.seconds))
                stop.set()
                if mode == "on":
                    scraper.join()
                    scrape_ms += scrapes
                rps[mode].append(run["rps"])
                runs.append({"round": round_no, "metrics": mode, "cpu_busy_before": round(busy, 2),
                             "scrapes": len(scrapes), **run})
                print(f"round {round_no} metrics={mode:3s}: {run['rps']:.2f} req/s ({run['requests']} requests, "
                      f"{run['errors']} errors, CPU {busy:.0%} busy before)", flush=True)
    mean = {m: statistics.mean(v) for m, v in rps.items()}
    ratio = mean["on"] / mean["off"]
    per_request_ms = 1000 / mean["on"] * args.concurrency  # each client's time per request
    modelled = alone["observe_per_request_us"] / 1000 / per_request_ms  # share of a request's time
    summary = {"rps_on": round(mean["on"], 3), "rps_off": round(mean["off"], 3), "ratio_on_off": round(ratio, 4),
               "throughput_change_pct": round((ratio - 1) * 100, 2),
               "phase_spread_pct": round((max(max(v) for v in rps.values()) / min(min(v) for v in rps.values()) - 1) * 100, 2),
               "observe_share_of_request_pct": round(modelled * 100, 4),
               "scrape_p50_ms_http": round(statistics.median(scrape_ms), 2) if scrape_ms else None,
               "target_pct": 1.0, "met": ratio >= 0.99}
    data = {"benchmark": "metrics_cost", "model": MODEL, "body": BODY, "seconds_per_phase": args.seconds,
            "rounds": args.rounds, "concurrency": args.concurrency, "scrape_every_s": args.scrape,
            "machine": machine(), "in_process": alone, "summary": summary, "runs": runs}
    lines = ["# What Prometheus metrics cost (issue 14)", "",
             f"Two servers, FLEXI_METRICS=on and off, same model (`{MODEL}`), closed loop of {args.concurrency} clients "
             f"sending `POST /api/generate` with `num_predict` 4, {args.seconds:.0f} s per phase, {args.rounds} phases "
             f"per server in ABBA order; the metrics server is scraped every {args.scrape:g} s meanwhile.", "",
             f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, {data['machine']['memory_gib']} GiB, "
             f"{data['machine']['date']} (shared with other jobs: see CPU busy per phase).", "",
             "| | metrics off | metrics on | on / off | target |", "|---|---|---|---|---|",
             f"| throughput (req/s, mean of phases) | {mean['off']:.2f} | {mean['on']:.2f} | **{ratio:.4f}** "
             f"({summary['throughput_change_pct']:+.2f} %) | ≥ 0.99 ({'met' if summary['met'] else 'missed'}) |", "",
             f"Spread between the fastest and slowest phase: {summary['phase_spread_pct']:.1f} % (machine noise).", "",
             f"In process (no HTTP, no model): the observation a finished request makes costs "
             f"**{alone['observe_per_request_us']:.1f} µs**, {summary['observe_share_of_request_pct']:.4f} % of the "
             f"{per_request_ms:.0f} ms a request took here; one scrape renders in {alone['scrape_p50_ms']:.2f} ms "
             f"({summary['scrape_p50_ms_http'] or float('nan'):.2f} ms over HTTP, p50).", "",
             "| round | metrics | CPU busy before | requests | errors | req/s | scrapes |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['round']} | {r['metrics']} | {r['cpu_busy_before']:.0%} | {r['requests']} | {r['errors']} | "
                     f"{r['rps']:.2f} | {r['scrapes']} |")
    lines += ["", "Reproduce: `python -m benchmarks.bench_metrics_cost`", ""]
    write_results("metrics_cost", data, "\n".join(lines))


if __name__ == "__main__":
    main()
