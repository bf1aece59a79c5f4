"""`flexi bench`'s figures for Flexi next to the same measurement of llama.cpp's own llama-server (issue 16, part 3).

The reference peer: llama-server serving the same GGUF with the same slot count, measured by the same
`flexi bench` code through its OpenAI dialect (rates from llama-server's own `timings`), in the same run
and alternating with Flexi, so machine noise hits both. What this checks: that a university comparing
models with `flexi bench` gets figures close to what llama.cpp itself reaches on its hardware, i.e. Flexi
adds little, and the tool measures right. Targets (from the batching issue, the same engine): Flexi's
generation tokens/s ≥ 0.95 × llama-server's at 1 stream, and its aggregate generation tokens/s (output
tokens ÷ wall time of the batch) ≥ 0.9 × at N streams. Per-stream rates at N streams are shown but not
judged: each server counts a stream's decode time differently when other streams' prompts are processed
in between (Flexi interleaves them into decode steps, llama-server reports `predicted_ms`).

    python -m benchmarks.bench_model_bench [--streams 1,4] [--rounds 2]   (~6 min; builds llama-server first)

Writes benchmarks/results/model_bench.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_batching import (
    build_llama_server,
    free_port,
    no_repack_flag,
    process,
)
from benchmarks.common import FlexiServer, machine, wait_for_quiet_cpu, write_results
from flexi.bench.bench import BenchConfig, run_bench
from flexi.store.store import default_model_file

MODEL = "smollm2:135m"
THREADS = 2
SLOT_CTX = 2048


def _rows(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["streams"]: row for row in doc["results"][0]["rows"]}


def _config(url: str, api: str, model: str, streams: list[int], args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(url=url, models=[model], streams=streams, prompt_tokens=args.prompt_tokens,
                       output_tokens=args.output_tokens, repeat=args.repeat, api=api)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,4")
    parser.add_argument("--rounds", type=int, default=2, help="Flexi and llama-server alternate this many times.")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--name", default="model_bench")
    args = parser.parse_args()
    streams = [int(s) for s in args.streams.split(",")]
    slots = max(streams)
    binary = Path(os.environ.get("FLEXI_LLAMA_SERVER") or build_llama_server())
    flag = no_repack_flag(binary)
    logs = Path(tempfile.mkdtemp(prefix="model-bench-"))
    busy = wait_for_quiet_cpu()
    runs: dict[str, list[dict[int, dict[str, Any]]]] = {"flexi": [], "llama_server": []}
    port = free_port()
    peer_cmd = [str(binary), "-m", str(default_model_file()), "-np", str(slots), "-c", str(SLOT_CTX * slots),
                "-t", str(THREADS), "-tb", str(THREADS), "--host", "127.0.0.1", "--port", str(port), *flag]
    env = {"FLEXI_NUM_PARALLEL": str(slots), "FLEXI_CONTEXT_LENGTH": str(SLOT_CTX), "FLEXI_KEEP_ALIVE": "30m"}
    with FlexiServer(port=free_port(), env=env) as flexi:
        for _ in range(args.rounds):
            runs["flexi"].append(_rows(asyncio.run(run_bench(_config(flexi.url, "ollama", MODEL, streams, args)))))
            with process(peer_cmd, f"http://127.0.0.1:{port}", "/health", logs / "llama-server.log") as url:
                peer = asyncio.run(run_bench(_config(url, "openai", MODEL, streams, args)))
                runs["llama_server"].append(_rows(peer))

    def med(who: str, n: int, key: str) -> float | None:
        values = [r[n][key] for r in runs[who] if r.get(n) and r[n].get(key)]
        return statistics.median(values) if values else None

    table = []
    for n in streams:
        row: dict[str, Any] = {"streams": n}
        for key in ("tg_tokens_per_s", "pp_tokens_per_s", "tg_total_tokens_per_s", "ttft_mean_s"):
            ours, peer = med("flexi", n, key), med("llama_server", n, key)
            row[key] = {"flexi": ours, "llama_server": peer, "ratio": ours / peer if ours and peer else None}
        table.append(row)
    targets = {1: 0.95}
    judged = {n: "tg_tokens_per_s" if n == 1 else "tg_total_tokens_per_s" for n in streams}
    verdicts = {r["streams"]: (r[judged[r["streams"]]]["ratio"] or 0) >= targets.get(r["streams"], 0.9) for r in table}
    data = {"benchmark": "model_bench", "machine": machine(), "cpu_busy_before": busy, "model": MODEL,
            "parameters": vars(args), "peer": {"binary": str(binary), "command": " ".join(peer_cmd[:1] + peer_cmd[3:])},
            "rows": table, "targets": {"tg_ratio_1_stream": 0.95, "tg_total_ratio_n_streams": 0.9},
            "met": all(verdicts.values()), "runs": runs}
    lines = [f"# flexi bench: Flexi vs llama-server on {MODEL}", "",
             (f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores. Prompt ≈ {args.prompt_tokens} "
              f"tokens, {args.output_tokens} output tokens, {args.repeat} batches per level, {args.rounds} alternating "
              "rounds (medians). Both measured by `flexi bench` (Flexi: /api/generate; llama-server: /v1/completions "
              "with its own timings)."), "",
             ("| streams | gen tok/s per stream Flexi | llama-server | ratio | gen tok/s all streams Flexi | llama-server "
              "| ratio | prompt tok/s Flexi | llama-server | TTFT s Flexi | llama-server | target met |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, d=1: "–" if v is None else f"{v:.{d}f}"
    for row in table:
        n = row["streams"]
        tg, total, pp, ttft = row["tg_tokens_per_s"], row["tg_total_tokens_per_s"], row["pp_tokens_per_s"], row["ttft_mean_s"]
        what = "per stream" if n == 1 else "all streams"
        lines.append(f"| {n} | {fmt(tg['flexi'])} | {fmt(tg['llama_server'])} | {fmt(tg['ratio'], 3)} "
                     f"| {fmt(total['flexi'])} | {fmt(total['llama_server'])} | {fmt(total['ratio'], 3)} "
                     f"| {fmt(pp['flexi'])} | {fmt(pp['llama_server'])} "
                     f"| {fmt(ttft['flexi'], 2)} | {fmt(ttft['llama_server'], 2)} "
                     f"| {'yes' if verdicts[n] else 'no'} ({what} ≥ {targets.get(n, 0.9)}) |")
    lines += ["", "Per-stream generation rates at several streams are not compared: the servers count a stream's decode "
              "time differently when other streams' prompts are processed in between."]
    write_results(args.name, data, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
