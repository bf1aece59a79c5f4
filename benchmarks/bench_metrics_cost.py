"""What Prometheus metrics cost in throughput (issue 14 target: ≤ 1 % throughput).

Two real servers on the same machine and model, identical but for FLEXI_METRICS (on / off), loaded
side by side in the same time window: each round runs a closed loop of `--concurrency` clients against
each server at once, so whatever else the machine does falls on both alike (on a 2-core machine shared
with other jobs, phases measured one after the other differ by more than the effect measured). The
clients send short completions (`POST /api/generate`, 4 tokens); meanwhile a scraper reads the metrics
server's `/metrics` every `--scrape` seconds, as Prometheus would (more often than its default 15 s, to
be pessimistic). Both servers' runners compete for the same cores, so metrics that cost CPU show as a
smaller share for the metrics server. The result is the median over rounds of on/off throughput.

The benchmark also measures what metrics add per request in process, without HTTP or a model: the
gate's observation call (`Metrics.generation`, every counter and histogram a request touches) and one
scrape, and relates them to the measured time per request.

    python -m benchmarks.bench_metrics_cost [--seconds 30] [--rounds 4] [--concurrency 2] [--scrape 1]
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


async def _side_by_side(urls: dict[str, str], concurrency: int, seconds: float) -> dict[str, dict[str, Any]]:
    runs = await asyncio.gather(*(_closed_loop(url, concurrency, seconds) for url in urls.values()))
    return dict(zip(urls, runs))


def on_off_round(on: str, off: str, round_no: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """One round of the on/off comparison (this benchmark's and bench_energy_cost's): wait for a quiet CPU,
    load both servers at once (who is named first alternates), and relate their throughputs."""
    busy = wait_for_quiet_cpu(timeout=30)
    order = {"on": on, "off": off} if round_no % 2 == 0 else {"off": off, "on": on}
    both = asyncio.run(_side_by_side(order, concurrency, seconds))
    ratio = both["on"]["rps"] / both["off"]["rps"] if both["off"]["rps"] else float("nan")
    return {"round": round_no, "cpu_busy_before": round(busy, 2), "on": both["on"], "off": both["off"],
            "ratio_on_off": round(ratio, 4)}


def on_off_summary(runs: list[dict[str, Any]]) -> tuple[float, list[float], float, float]:
    """Median on/off ratio over the rounds, the rounds' ratios, and mean throughput on and off."""
    ratios = [r["ratio_on_off"] for r in runs]
    return (statistics.median(ratios), ratios, statistics.mean(r["on"]["rps"] for r in runs),
            statistics.mean(r["off"]["rps"] for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2, help="clients per server")
    parser.add_argument("--scrape", type=float, default=1.0, help="seconds between scrapes of the metrics server")
    args = parser.parse_args()

    alone = _in_process()
    print(f"in process: {alone}", flush=True)
    runs: list[dict[str, Any]] = []
    scrape_ms: list[float] = []
    common = {"FLEXI_NUM_THREADS": "1"}  # two runners on the shared cores: oversubscribed llama.cpp threads spin-wait
    with FlexiServer(port=11487, env={**common, "FLEXI_METRICS": "on"}) as on, \
            FlexiServer(port=11488, env={**common, "FLEXI_METRICS": "off"}) as off:
        for round_no in range(args.rounds):
            stop, scrapes = threading.Event(), []
            scraper = threading.Thread(target=_scraper, args=(on.url, args.scrape, stop, scrapes))
            scraper.start()
            run = on_off_round(on.url, off.url, round_no, args.concurrency, args.seconds)
            stop.set()
            scraper.join()
            scrape_ms += scrapes
            runs.append({**run, "scrapes": len(scrapes)})
            print(f"round {round_no}: metrics on {run['on']['rps']:.2f} req/s, off {run['off']['rps']:.2f} req/s, "
                  f"on/off {run['ratio_on_off']:.4f} (errors {run['on']['errors']}/{run['off']['errors']}, "
                  f"CPU {run['cpu_busy_before']:.0%} busy before)", flush=True)
    ratio, ratios, rps_on, rps_off = on_off_summary(runs)
    per_request_ms = 1000 / rps_on * args.concurrency  # each client's time per request
    share = alone["observe_per_request_us"] / 1000 / per_request_ms  # of a request's time
    summary = {"rps_on": round(rps_on, 3), "rps_off": round(rps_off, 3), "median_ratio_on_off": round(ratio, 4),
               "ratio_range": [min(ratios), max(ratios)], "throughput_change_pct": round((ratio - 1) * 100, 2),
               "observe_share_of_request_pct": round(share * 100, 4),
               "scrape_p50_ms_http": round(statistics.median(scrape_ms), 2) if scrape_ms else None,
               "target_pct": 1.0, "met": ratio >= 0.99}
    data = {"benchmark": "metrics_cost", "model": MODEL, "body": BODY, "seconds_per_round": args.seconds,
            "rounds": args.rounds, "concurrency_per_server": args.concurrency, "scrape_every_s": args.scrape,
            "machine": machine(), "in_process": alone, "summary": summary, "runs": runs}
    lines = ["# What Prometheus metrics cost (issue 14)", "",
             f"Two servers, FLEXI_METRICS=on and off, same model (`{MODEL}`), loaded side by side (one runner thread each): per round "
             f"{args.concurrency} clients per server send `POST /api/generate` (`num_predict` 4) in a closed loop for "
             f"{args.seconds:.0f} s, {args.rounds} rounds; the metrics server is scraped every {args.scrape:g} s meanwhile.", "",
             f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, {data['machine']['memory_gib']} GiB, "
             f"{data['machine']['date']} (shared with other jobs: see CPU busy per round).", "",
             "| | metrics off | metrics on | on / off (median of rounds) | target |", "|---|---|---|---|---|",
             f"| throughput (req/s, mean of rounds) | {rps_off:.2f} | {rps_on:.2f} | **{ratio:.4f}** "
             f"({summary['throughput_change_pct']:+.2f} %; rounds {min(ratios):.3f}–{max(ratios):.3f}) | ≥ 0.99 "
             f"({'met' if summary['met'] else 'missed'}) |", "",
             f"In process (no HTTP, no model): the observation a finished request makes costs "
             f"**{alone['observe_per_request_us']:.1f} µs**, {summary['observe_share_of_request_pct']:.4f} % of the "
             f"{per_request_ms:.0f} ms a request took here; one scrape renders in {alone['scrape_p50_ms']:.2f} ms "
             f"({summary['scrape_p50_ms_http'] or float('nan'):.2f} ms over HTTP, p50).", "",
             "| round | CPU busy before | on: requests / req/s | off: requests / req/s | on / off | scrapes |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['round']} | {r['cpu_busy_before']:.0%} | {r['on']['requests']} / {r['on']['rps']:.2f} | "
                     f"{r['off']['requests']} / {r['off']['rps']:.2f} | {r['ratio_on_off']:.4f} | {r['scrapes']} |")
    lines += ["", "Reproduce: `python -m benchmarks.bench_metrics_cost`", ""]
    write_results("metrics_cost", data, "\n".join(lines))


if __name__ == "__main__":
    main()
