"""Single-stream decode speed: Flexi (HTTP → server → runner process) versus plain llama-cpp-python.

Issue 2's target: the engine must not cost more than 5 % against llama-cpp-python
on the same model. Both decode 128 tokens greedily from the same prompt with EOS
suppressed, so they do identical work; each is measured from its first to its
last token (decode rate) and end to end (request rate).

Run: python -m benchmarks.bench_engine_overhead [--runs 5]
Writes benchmarks/results/engine_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time

import httpx

from benchmarks.common import FlexiServer, machine, median, write_results
from flexi.store.store import default_model_file

PROMPT = "Write a story about a student who builds a robot."
TOKENS = 128


def _no_repack_params():  # type: ignore[no-untyped-def]
    """llama-cpp-python with CPU weight repacking off, as Flexi runs on AMX CPUs (llama.cpp#20824 crashes otherwise)."""
    import llama_cpp

    original = llama_cpp.llama_model_default_params

    def patched():  # type: ignore[no-untyped-def]
        params = original()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_model_default_params = patched
    import llama_cpp.llama as high

    high.llama_cpp.llama_model_default_params = patched


def bench_llama_cpp_python(runs: int) -> dict[str, float]:
    _no_repack_params()
    import llama_cpp

    llm = llama_cpp.Llama(str(default_model_file()), n_ctx=4096, n_threads=2, n_batch=512, verbose=False)
    eos = llm.token_eos()
    prompt = f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    decode, total = [], []
    for _ in range(runs + 1):
        llm.reset()
        t0 = time.perf_counter()
        first = last = None
        n = 0
        for _chunk in llm.create_completion(prompt, max_tokens=TOKENS, temperature=0, stream=True, logit_bias={eos: -1e9}):
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
        decode.append((n - 1) / (last - first))
        total.append(n / (last - t0))
    return {"decode_tok_s": median(decode[1:]), "request_tok_s": median(total[1:]), "tokens": n}


def bench_flexi(runs: int) -> dict[str, float]:
    with FlexiServer() as srv, httpx.Client(base_url=srv.url, timeout=300) as http:
        http.post("/api/generate", json={"model": "smollm2:135m", "keep_alive": -1})
        decode, total, server_rate = [], [], []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            first = last = None
            final = {}
            n = 0
            with http.stream("POST", "/api/chat", json={
                "model": "smollm2:135m", "messages": [{"role": "user", "content": PROMPT}],
                "options": {"temperature": 0, "num_predict": TOKENS, "ignore_eos": True}}) as r:
                for line in r.iter_lines():
                    if not line:
                        continue
                    msg = json.loads(line)
                    now = time.perf_counter()
                    if msg["done"]:
                        final = msg
                    else:
                        first = first or now
                        last = now
                        n += 1
            decode.append((final["eval_count"] - 1) / (last - first))
            total.append(final["eval_count"] / (last - t0))
            server_rate.append(final["eval_count"] / (final["eval_duration"] / 1e9))
        return {"decode_tok_s": median(decode[1:]), "request_tok_s": median(total[1:]),
                "server_eval_tok_s": median(server_rate[1:]), "tokens": final["eval_count"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    peer = bench_llama_cpp_python(args.runs)
    flexi = bench_flexi(args.runs)
    ratio = flexi["decode_tok_s"] / peer["decode_tok_s"]
    data = {"benchmark": "engine_overhead", "machine": machine(), "model": "smollm2:135m (SmolLM2-135M-Instruct Q4_1)",
            "output_tokens": TOKENS, "runs": args.runs, "llama_cpp_python": peer, "flexi": flexi,
            "flexi_over_peer_decode": round(ratio, 3), "target": ">= 0.95 (engine costs at most 5 %)",
            "met": ratio >= 0.95}
    m = data["machine"]
    md = f"""# Engine overhead: Flexi vs plain llama-cpp-python (single stream)

Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, llama-cpp-python {m['llama_cpp_python']}, {m['date']}.
Model smollm2:135m (SmolLM2-135M-Instruct Q4_1), {TOKENS} output tokens, greedy, EOS suppressed, median of {args.runs} runs after one warm-up.

| | decode tokens/s (first→last token) | request tokens/s (incl. prompt) |
|---|---|---|
| llama-cpp-python (in-process `Llama`) | {peer['decode_tok_s']:.1f} | {peer['request_tok_s']:.1f} |
| Flexi (`/api/chat` over HTTP, runner process) | {flexi['decode_tok_s']:.1f} | {flexi['request_tok_s']:.1f} |

Flexi / llama-cpp-python decode: **{ratio:.3f}** (target ≥ 0.95: {'met' if ratio >= 0.95 else 'missed'}).
Server-side eval rate reported by Flexi: {flexi['server_eval_tok_s']:.1f} tokens/s.

Reproduce: `python -m benchmarks.bench_engine_overhead --runs {args.runs}`
"""
    write_results("engine_overhead", data, md)


if __name__ == "__main__":
    main()
