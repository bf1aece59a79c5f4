"""Embedding throughput: Flexi (HTTP `/api/embed` → server → runner process) versus llama-cpp-python directly.

Issue 13's target: embedding throughput within 10 % of calling llama-cpp-python directly. Course documents
are embedded at ingest in requests of 32 chunk texts (`EngineEmbedder`), so both sides embed the same
deterministic corpus (1,024 course-like passages of 60–120 words, about 110–220 tokens as ingest chunks are, German and
English mixed) in batches of
32, normalised, with the default embedding model all-minilm:l6-v2 (BERT, 384 dimensions), on the very GGUF
blob the store registered:

- llama-cpp-python in process: `Llama(blob, embedding=True, n_ctx=512, n_batch=512, n_threads=<runner's>)`,
  `embed(batch_of_32)` (it packs several inputs into one llama_decode as separate sequences: its best
  configuration), and one input per `embed` call (what the runner used to do);
- Flexi: `POST /api/embed` with 32 inputs per request, on a real `flexi serve` (throwaway FLEXI_HOME,
  FLEXI_DEFAULT_EMBEDDING_MODEL=true), one request at a time as ingest sends them;
- optionally (`--chat`) Flexi again while one chat stream of the chat model runs on the same server.

Runs alternate (peer batched, peer one by one, Flexi, …), each a full pass over the corpus after a warm-up
pass; the report gives medians of chunks/s and tokens/s (tokens as each side counts them: the same tokenizer,
so the same counts). Vectors are checked against the peer's (cosine > 0.999 for every passage).

Run: python -m benchmarks.bench_embedding [--runs 3] [--chat]
Writes benchmarks/results/embedding.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import FlexiServer, cpu_busy_fraction, machine, median, wait_for_quiet_cpu, write_results
from flexi.engine.runner.model import cpu_has_amx
from flexi.store import DEFAULT_EMBED_MODEL_NAME, ModelStore

NAME = "embedding"
PASSAGES = 1024
BATCH = 32
THREADS = os.cpu_count() or 2  # the runner's default (`num_threads`)
TARGET = 0.9
MIN_WORDS, MAX_WORDS = 60, 120  # ~110–220 MiniLM tokens: the size of an ingest chunk (chunking.DEFAULT_MAX_TOKENS 200)

_DE = {
    "subjects": ["Die Vorlesung", "Das Skript", "Die Übung", "Der Satz von Bayes", "Die Klausur", "Das Tutorium",
                 "Die lineare Regression", "Ein binärer Suchbaum", "Die Prüfungsordnung", "Das Praktikum",
                 "Die Eigenwertzerlegung", "Der Algorithmus von Dijkstra", "Die Hausarbeit", "Das Seminar"],
    "verbs": ["beschreibt", "erklärt", "behandelt", "verlangt", "zeigt", "fasst zusammen", "vergleicht",
              "begründet", "wiederholt", "vertieft"],
    "objects": ["die Varianz einer Stichprobe", "die Laufzeit im schlechtesten Fall", "die Frist für die Anmeldung",
                "das charakteristische Polynom einer Matrix", "die Wahrscheinlichkeit eines Ereignisses",
                "den kürzesten Weg in einem Graphen", "die Abgabe der Lösungen bis Freitag", "die Bewertung nach Punkten",
                "die Normalverteilung und ihre Parameter", "die Komplexität von Sortierverfahren",
                "den Unterschied zwischen Bachelor und Master", "die Signifikanz eines Tests"],
    "tails": ["im dritten Kapitel", "mit mehreren Beispielen", "für alle Studierenden des Moduls",
              "in der Sprechstunde", "auf Folie 12", "anhand einer Tabelle", "wie in der letzten Woche angekündigt",
              "mit Hinweisen zur Klausurvorbereitung"],
}
_EN = {
    "subjects": ["The lecture", "The script", "This exercise", "Bayes' theorem", "The final exam", "The tutorial",
                 "Linear regression", "A binary search tree", "The examination regulation", "The lab course",
                 "The eigenvalue decomposition", "Dijkstra's algorithm", "The term paper", "The seminar"],
    "verbs": ["describes", "explains", "covers", "requires", "shows", "summarises", "compares", "justifies",
              "revisits", "deepens"],
    "objects": ["the variance of a sample", "the worst-case running time", "the registration deadline",
                "the characteristic polynomial of a matrix", "the probability of an event",
                "the shortest path in a graph", "the submission of solutions by Friday", "grading by points",
                "the normal distribution and its parameters", "the complexity of sorting algorithms",
                "the difference between bachelor and master", "the significance of a test"],
    "tails": ["in chapter three", "with several examples", "for all students of the module", "in office hours",
              "on slide 12", "using a table", "as announced last week", "with hints for exam preparation"],
}


def corpus(n: int = PASSAGES, seed: int = 13) -> list[str]:
    """n deterministic course-like passages of MIN_WORDS–MAX_WORDS words, every other one German."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = _DE if i % 2 else _EN
        target = rng.randint(MIN_WORDS, MAX_WORDS)
        sentences: list[str] = []
        count = 0
        while count < target:
            s = f"{rng.choice(words['subjects'])} {rng.choice(words['verbs'])} {rng.choice(words['objects'])} " \
                f"{rng.choice(words['tails'])}."
            sentences.append(s)
            count += len(s.split())
        out.append(" ".join(sentences))
    return out


def batches(texts: list[str]) -> list[list[str]]:
    return [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]


class Peer:
    """llama-cpp-python in process, on the same blob, with the runner's threads and context."""

    def __init__(self, gguf: str) -> None:
        if cpu_has_amx():  # as Flexi runs there (FLEXI_CPU_REPACK=auto); ggml's AMX path crashes otherwise
            from benchmarks.bench_engine_overhead import _no_repack_params
            _no_repack_params()
        from llama_cpp import Llama

        self.llm = Llama(model_path=gguf, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=THREADS,
                         n_threads_batch=THREADS, verbose=False)

    def batched(self, texts: list[str]) -> tuple[np.ndarray, int, float]:
        t0 = time.perf_counter()
        vectors: list[list[float]] = []
        tokens = 0
        for batch in batches(texts):
            out, n = self.llm.embed(batch, normalize=True, truncate=True, return_count=True)
            vectors += out
            tokens += n
        return np.asarray(vectors, dtype=np.float32), tokens, time.perf_counter() - t0

    def one_by_one(self, texts: list[str]) -> tuple[np.ndarray, int, float]:
        t0 = time.perf_counter()
        vectors: list[list[float]] = []
        tokens = 0
        for text in texts:
            out, n = self.llm.embed(text, normalize=True, truncate=True, return_count=True)
            vectors.append(out)
            tokens += n
        return np.asarray(vectors, dtype=np.float32), tokens, time.perf_counter() - t0


def flexi_pass(http: httpx.Client, texts: list[str]) -> tuple[np.ndarray, int, float]:
    t0 = time.perf_counter()
    vectors: list[list[float]] = []
    tokens = 0
    for batch in batches(texts):
        r = http.post("/api/embed", json={"model": DEFAULT_EMBED_MODEL_NAME, "input": batch, "truncate": True,
                                          "keep_alive": -1})
        r.raise_for_status()
        body = r.json()
        vectors += body["embeddings"]
        tokens += body["prompt_eval_count"]
    return np.asarray(vectors, dtype=np.float32), tokens, time.perf_counter() - t0


class ChatStream:
    """One chat stream of the chat model, restarted until stopped (the `--chat` variant)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.tokens = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=600) as http:
            while not self.stop.is_set():
                with http.stream("POST", "/api/chat", json={
                        "model": "smollm2:135m", "messages": [{"role": "user", "content": "Tell a long story."}],
                        "options": {"temperature": 0, "num_predict": 256, "ignore_eos": True}}) as r:
                    for line in r.iter_lines():
                        if line:
                            self.tokens += 1
                        if self.stop.is_set():
                            break

    def __enter__(self) -> "ChatStream":
        self.thread.start()
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def rates(tokens: int, seconds: float, n: int) -> dict[str, float]:
    return {"chunks_s": n / seconds, "tokens_s": tokens / seconds, "seconds": seconds, "tokens": tokens}


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {"chunks_s": median([r["chunks_s"] for r in runs]), "tokens_s": median([r["tokens_s"] for r in runs]),
            "tokens": runs[0]["tokens"], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--passages", type=int, default=PASSAGES)
    parser.add_argument("--chat", action="store_true", help="also measure Flexi with one chat stream running")
    parser.add_argument("--name", default=NAME)
    parser.add_argument("--tree", help="serve Flexi from this checkout instead (e.g. `git archive 16e68e9` of the "
                        "one-input-per-decode runner, for a before/after)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait for other processes to leave the CPU before each pass")
    args = parser.parse_args()
    texts = corpus(args.passages)
    busy_before: list[float] = []
    env = {"FLEXI_DEFAULT_EMBEDDING_MODEL": "true"}
    if args.tree:
        env["PYTHONPATH"] = os.path.abspath(args.tree)
    with FlexiServer(port=11511, env=env, cwd=os.path.abspath(args.tree) if args.tree else None) as srv, \
            httpx.Client(base_url=srv.url, timeout=600) as http:
        gguf = str(ModelStore(Path(srv.home) / "models").get(DEFAULT_EMBED_MODEL_NAME).model_path)
        peer = Peer(gguf)
        # warm-up: both load, page in their weights and build compute buffers
        peer.batched(texts[:BATCH * 2])
        peer.one_by_one(texts[:BATCH])
        flexi_pass(http, texts[:BATCH * 2])
        if args.chat:
            http.post("/api/generate", json={"model": "smollm2:135m", "keep_alive": -1})
        results: dict[str, list[dict[str, float]]] = {"peer_batched": [], "peer_one_by_one": [], "flexi": []}
        if args.chat:
            results["flexi_with_chat"] = []
        reference: np.ndarray | None = None
        agreement: list[float] = []
        for run in range(args.runs):
            for variant in results:
                busy_before.append(wait_for_quiet_cpu(0.15, timeout=args.quiet_wait))
                if variant == "peer_batched":
                    vecs, tokens, secs = peer.batched(texts)
                elif variant == "peer_one_by_one":
                    vecs, tokens, secs = peer.one_by_one(texts)
                elif variant == "flexi":
                    vecs, tokens, secs = flexi_pass(http, texts)
                else:
                    with ChatStream(srv.url):
                        vecs, tokens, secs = flexi_pass(http, texts)
                results[variant].append(rates(tokens, secs, len(texts)))
                if variant == "peer_one_by_one" and reference is None:
                    reference = vecs
                if reference is not None and variant.startswith("flexi"):
                    agreement.append(float(np.min(np.sum(reference * vecs, axis=1))))
                if reference is not None and variant == "peer_batched":
                    agreement.append(float(np.min(np.sum(reference * vecs, axis=1))))
                print(f"run {run + 1} {variant}: {len(texts) / secs:.1f} chunks/s, {tokens / secs:.0f} tokens/s",
                      flush=True)
        busy_after = cpu_busy_fraction()
    out = {k: summary(v) for k, v in results.items()}
    ratio = out["flexi"]["chunks_s"] / out["peer_batched"]["chunks_s"]
    ratio_obo = out["flexi"]["chunks_s"] / out["peer_one_by_one"]["chunks_s"]
    lengths = [len(t.split()) for t in texts]
    data = {"benchmark": NAME, "machine": machine(), "model": f"{DEFAULT_EMBED_MODEL_NAME} (all-MiniLM-L6-v2, BERT, 384 dims)",
            "gguf": os.path.basename(gguf), "passages": len(texts), "batch": BATCH, "threads": THREADS,
            "words_per_passage": {"min": min(lengths), "median": median(lengths), "max": max(lengths)},
            "tokens_per_passage_mean": out["flexi"]["tokens"] / len(texts), "runs": args.runs,
            "flexi_tree": args.tree or "working tree", "results": out, "flexi_over_peer_batched": round(ratio, 3), "flexi_over_peer_one_by_one": round(ratio_obo, 3),
            "min_cosine_vs_peer": min(agreement) if agreement else None,
            "cpu_busy_before_each_run": busy_before, "cpu_busy_after": busy_after,
            "load_average_after": os.getloadavg(), "target": ">= 0.9 x llama-cpp-python (within 10 %)",
            "met": ratio >= TARGET}
    m = data["machine"]
    disturbed = max(busy_before) > 0.15
    rows = [("llama-cpp-python, `embed(32 inputs)` (packed sequences)", "peer_batched"),
            ("llama-cpp-python, `embed(1 input)` × 32", "peer_one_by_one"),
            ("Flexi, `POST /api/embed` with 32 inputs (HTTP → runner)", "flexi")]
    if args.chat:
        rows.append(("Flexi, same, while one chat stream runs on the server", "flexi_with_chat"))
    table = "\n".join(f"| {label} | {out[k]['chunks_s']:.1f} | {out[k]['tokens_s']:.0f} |" for label, k in rows)
    md = f"""# Embedding throughput: Flexi vs llama-cpp-python directly

Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, llama-cpp-python {m['llama_cpp_python']}, {m['date']}.
Model {data['model']}, the GGUF blob Flexi registered, {THREADS} threads on both sides, n_ctx 512.
Corpus: {len(texts)} deterministic course-like passages (German and English alternating, {min(lengths)}–{max(lengths)} words,
{data['tokens_per_passage_mean']:.0f} tokens on average), in batches of {BATCH}, normalised; median of {args.runs} full passes
per variant, variants alternating, after a warm-up.
CPU busy before each pass (other processes on this shared machine): {min(busy_before):.0%}–{max(busy_before):.0%}{' (disturbed)' if disturbed else ''};
load average afterwards {data['load_average_after'][0]:.2f}.

| | chunks/s | tokens/s |
|---|---|---|
{table}

Flexi / llama-cpp-python batched: **{ratio:.3f}** (target ≥ {TARGET}: {'met' if ratio >= TARGET else 'missed'}).
Flexi / llama-cpp-python one by one: {ratio_obo:.3f}. Flexi served from: {data['flexi_tree']}.
Smallest cosine between Flexi's and the peer's vectors for the same passage: {data['min_cosine_vs_peer']:.6f} (must be > 0.999).

Reproduce: `python -m benchmarks.bench_embedding --runs {args.runs} --passages {len(texts)}{' --chat' if args.chat else ''}{f' --tree {args.tree}' if args.tree else ''}`
"""
    write_results(args.name, data, md)


if __name__ == "__main__":
    main()
