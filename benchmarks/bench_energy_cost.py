"""What energy sampling costs in throughput (issue 14 target, with metrics: ≤ 1 % throughput).

Two real servers on the same machine and model, identical but for FLEXI_ENERGY (on / off), loaded side by
side in the same time window like `bench_metrics_cost` (whatever else the machine does falls on both
alike): each round runs a closed loop of `--concurrency` clients against each server at once, sending short
completions. The energy server samples every `--interval` seconds (default 1 s, five times more often than
the default, to be pessimistic) and every request passes its busy-time tracker. The result is the median
over rounds of on/off throughput.

In process, without HTTP or a model, the benchmark also measures what a request pays (the busy tracker
around its event stream) and what one sample costs (reading the estimate, integrating, attributing).

    python -m benchmarks.bench_energy_cost [--seconds 30] [--rounds 4] [--concurrency 2] [--interval 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from benchmarks.bench_metrics_cost import BODY, MODEL, on_off_round, on_off_summary
from benchmarks.common import FlexiServer, machine, write_results


def _in_process(n: int = 20000) -> dict[str, float]:
    """The busy tracker around one request's 6 events, and one sample with 8 requests running."""
    from flexi.energy.busy import BusyTracker
    from flexi.energy.estimate import EstimatedSource, HostCpuTime
    from flexi.energy.sampler import Sampler

    tracker = BusyTracker()

    async def events():  # type: ignore[no-untyped-def]
        for i in range(6):
            yield i

    async def requests() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            async for _ in tracker.watch(events(), MODEL, 3):
                pass
        with_tracker = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n):
            async for _ in events():
                pass
        return (with_tracker - (time.perf_counter() - t0)) / n

    per_request = asyncio.run(requests())
    tracker = BusyTracker()
    sampler = Sampler([EstimatedSource(50, 150, HostCpuTime(), lambda: 0.5)], tracker, max_gap=30)
    for i in range(8):
        tracker.begin(f"m{i % 3}", i)
    sampler.sample()
    samples = []
    for _ in range(500):
        t0 = time.perf_counter()
        sampler.sample()
        samples.append((time.perf_counter() - t0) * 1e6)
    return {"tracker_per_request_us": round(per_request * 1e6, 2), "sample_p50_us": round(statistics.median(samples), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2, help="clients per server")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between power samples (FLEXI_ENERGY_INTERVAL)")
    args = parser.parse_args()

    alone = _in_process()
    print(f"in process: {alone}", flush=True)
    runs: list[dict[str, Any]] = []
    common = {"FLEXI_NUM_THREADS": "1", "FLEXI_ENERGY_INTERVAL": str(args.interval)}
    with FlexiServer(port=11489, env={**common, "FLEXI_ENERGY": "on"}) as on, \
            FlexiServer(port=11490, env={**common, "FLEXI_ENERGY": "off"}) as off:
        for round_no in range(args.rounds):
            run = on_off_round(on.url, off.url, round_no, args.concurrency, args.seconds)
            runs.append(run)
            print(f"round {round_no}: energy on {run['on']['rps']:.2f} req/s, off {run['off']['rps']:.2f} req/s, "
                  f"on/off {run['ratio_on_off']:.4f} (errors {run['on']['errors']}/{run['off']['errors']}, "
                  f"CPU {run['cpu_busy_before']:.0%} busy before)", flush=True)
    ratio, ratios, rps_on, rps_off = on_off_summary(runs)
    per_request_ms = 1000 / rps_on * args.concurrency
    share = alone["tracker_per_request_us"] / 1000 / per_request_ms
    summary = {"rps_on": round(rps_on, 3), "rps_off": round(rps_off, 3), "median_ratio_on_off": round(ratio, 4),
               "ratio_range": [min(ratios), max(ratios)], "throughput_change_pct": round((ratio - 1) * 100, 2),
               "tracker_share_of_request_pct": round(share * 100, 5), "target_pct": 1.0, "met": ratio >= 0.99}
    data = {"benchmark": "energy_cost", "model": MODEL, "body": BODY, "seconds_per_round": args.seconds,
            "rounds": args.rounds, "concurrency_per_server": args.concurrency, "interval_s": args.interval,
            "machine": machine(), "in_process": alone, "summary": summary, "runs": runs}
    lines = ["# What energy sampling costs (issue 14)", "",
             f"Two servers, FLEXI_ENERGY=on (sampling every {args.interval:g} s) and off, same model (`{MODEL}`), loaded "
             f"side by side (one runner thread each): per round {args.concurrency} clients per server send "
             f"`POST /api/generate` (`num_predict` 4) in a closed loop for {args.seconds:.0f} s, {args.rounds} rounds.", "",
             f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, {data['machine']['memory_gib']} GiB, "
             f"{data['machine']['date']} (shared with other jobs: see CPU busy per round).", "",
             "| | energy off | energy on | on / off (median of rounds) | target |", "|---|---|---|---|---|",
             f"| throughput (req/s, mean of rounds) | {rps_off:.2f} | {rps_on:.2f} | **{ratio:.4f}** "
             f"({summary['throughput_change_pct']:+.2f} %; rounds {min(ratios):.3f}–{max(ratios):.3f}) | ≥ 0.99 "
             f"({'met' if summary['met'] else 'missed'}) |", "",
             f"In process (no HTTP, no model): the busy tracker costs a request **{alone['tracker_per_request_us']:.1f} µs** "
             f"({summary['tracker_share_of_request_pct']:.5f} % of the {per_request_ms:.0f} ms a request took here); one "
             f"sample with 8 requests running takes {alone['sample_p50_us']:.0f} µs (p50).", "",
             "| round | CPU busy before | on: requests / req/s | off: requests / req/s | on / off |", "|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['round']} | {r['cpu_busy_before']:.0%} | {r['on']['requests']} / {r['on']['rps']:.2f} | "
                     f"{r['off']['requests']} / {r['off']['rps']:.2f} | {r['ratio_on_off']:.4f} |")
    lines += ["", "Reproduce: `python -m benchmarks.bench_energy_cost`", ""]
    write_results("energy_cost", data, "\n".join(lines))


if __name__ == "__main__":
    main()
