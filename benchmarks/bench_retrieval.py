"""Retrieval latency of the embedded default index at 50,000 chunks (issue 13: p50 ≤ 50 ms, p99 ≤ 200 ms).

A synthetic course corpus: 500 documents of 100 chunks, each chunk 120–200 words drawn from a
Zipf-distributed vocabulary of German and English course words plus generated rarer words (as
real text is: few very common words, a long tail), headed by a heading path, with a random 384-dimension
vector (all-MiniLM-L6-v2's size; the values do not change the cost of exact search). Queries are
questions of 6–10 words, mixing function words with words of a random chunk. Embedding the query is
not part of the figure (that is the engine's, measured by the embedding benchmark).

Measured, in one process, after 20 warm-up queries, on the same queries, the variants taking turns query by
query (so another process's burst on a shared machine hits all of them alike):
- `HybridIndex.hybrid_search` (BM25 top 50 + dense top 50, fused by RRF, k = 5), for a caller who may
  see every document (the worst case of a global index) and for one course of 20 documents;
- its two halves alone (`LexicalIndex.search`, `DenseIndex.search`);
- reference peers: the `rank_bm25` package's `BM25Okapi.get_scores` + top-k (the common pure-Python
  BM25; fewer queries, it is slow) on the same analysed tokens, and numpy brute force (normalised
  matrix @ query + argpartition, no filter) for the dense half. Top-10 agreement with the peers is
  reported as a correctness check (rank_bm25 uses another IDF, so it is close, not equal).

    pip install rank_bm25      # the lexical peer (not a Flexi dependency)
    python -m benchmarks.bench_retrieval [--chunks 50000] [--queries 500]

Writes benchmarks/results/retrieval.{json,md}.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import (
    cpu_busy_fraction,
    machine,
    wait_for_quiet_cpu,
    write_results,
)
from flexi.rag.chunking import Chunk
from flexi.rag.fusion import HybridIndex
from flexi.rag.lexical import analyze

NAME = "retrieval"
DIM = 384
CHUNKS_PER_DOC = 100
COURSE_DOCS = 20
K = 5
TARGET_P50_MS, TARGET_P99_MS = 50.0, 200.0

COURSE_WORDS = """
Vorlesung Übung Klausur Prüfung Anmeldung Termin Raum Seminar Skript Folie Aufgabe Lösung Hausarbeit Modul
Semester Dozent Tutorium Praktikum Bachelor Master Studiengang Prüfungsordnung Frist Abgabe Note Bewertung
Regression Varianz Mittelwert Stichprobe Hypothese Signifikanz Wahrscheinlichkeit Verteilung Matrix Vektor
Ableitung Integral Funktion Gleichung Algorithmus Laufzeit Komplexität Datenstruktur Baum Graph Knoten Kante
Speicher Prozess Betriebssystem Netzwerk Protokoll Datenbank Abfrage Tabelle Schlüssel Index Transaktion
lecture exercise exam registration deadline room seminar slides assignment solution grade module semester
regression variance mean sample hypothesis significance probability distribution matrix vector derivative
integral function equation algorithm runtime complexity structure tree graph node edge memory process network
protocol database query table key index transaction theorem proof lemma definition example method model data
""".split()
FUNCTION_WORDS = """der die das und ist in zu den von mit für auf nicht eine als auch es an werden aus the of and to
a in is that for it as with was on be by this are or from at which""".split()
QUESTION_WORDS = "Wann Wie Was Warum Welche Wo When How What Why Which Where Erkläre Explain".split()


def corpus(n_chunks: int, seed: int = 13) -> tuple[list[Chunk], np.ndarray, list[str]]:
    rng = random.Random(seed)
    syllables = ["ka", "ro", "ti", "men", "sch", "ber", "lo", "tra", "ung", "ver", "al", "ex", "in", "ge", "da", "stru"]
    rare = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 5))) for _ in range(40_000)})
    vocab = FUNCTION_WORDS + COURSE_WORDS + rare
    weights = [1.0 / (rank + 1) ** 1.07 for rank in range(len(vocab))]  # Zipf
    chunks = []
    for i in range(n_chunks):
        doc, ordinal = divmod(i, CHUNKS_PER_DOC)
        text = " ".join(rng.choices(vocab, weights, k=rng.randint(120, 200))) + "."
        heading = (f"Kapitel {ordinal // 10 + 1}", rng.choice(COURSE_WORDS))
        chunks.append(Chunk(doc, f"skript-{doc}.pdf", ordinal + 1, heading, text, ordinal))
    vectors = np.random.default_rng(seed).standard_normal((n_chunks, DIM), dtype=np.float32)
    queries = []
    for _ in range(1000):
        words = rng.choice(chunks).text.rstrip(".").split()
        content = [w for w in words if w not in FUNCTION_WORDS]
        queries.append(" ".join([rng.choice(QUESTION_WORDS)] + rng.sample(FUNCTION_WORDS, 2)
                                + rng.sample(content, min(len(content), rng.randint(3, 7)))) + "?")
    return chunks, vectors, queries


def timed(fn: Callable[[int], Any], n: int) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for i in range(n):
        t0 = time.perf_counter()
        results.append(fn(i))
        times.append((time.perf_counter() - t0) * 1000)
    return times, results


def stats(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(times), "p50_ms": round(statistics.median(times), 3), "p90_ms": round(pick(0.90), 3),
            "p99_ms": round(pick(0.99), 3), "max_ms": round(max(times), 3), "mean_ms": round(statistics.fmean(times), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--peer-queries", type=int, default=50)
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args()

    print(f"building a synthetic corpus of {args.chunks} chunks ...", flush=True)
    chunks, vectors, all_queries = corpus(args.chunks)
    queries = all_queries[: args.queries]
    rng = np.random.default_rng(5)
    qvecs = rng.standard_normal((len(all_queries), DIM), dtype=np.float32)
    n_docs = -(-args.chunks // CHUNKS_PER_DOC)
    everything = set(range(n_docs))
    course = set(range(COURSE_DOCS))

    t0 = time.perf_counter()
    index = HybridIndex.from_chunks(chunks, vectors)
    build_s = time.perf_counter() - t0
    print(f"index built in {build_s:.1f} s", flush=True)
    gc.collect()

    for i in range(20):  # warm-up
        index.hybrid_search(all_queries[-1 - i], qvecs[-1 - i], K, everything)

    busy_before = wait_for_quiet_cpu(timeout=120)
    cells: dict[str, dict[str, Any]] = {}
    for label, allowed in (("all documents", everything), (f"one course ({COURSE_DOCS} documents)", course)):
        # round-robin per query, so a disturbance by other processes hits all three alike
        hybrid_t, lexical_t, dense_t = [], [], []
        for i in range(len(queries)):
            for times, fn in ((hybrid_t, lambda: index.hybrid_search(queries[i], qvecs[i], K, allowed)),
                              (lexical_t, lambda: index.lexical.search(queries[i], 50, allowed)),
                              (dense_t, lambda: index.dense.search(qvecs[i], 50, allowed))):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1000)
        cells[label] = {"allowed_chunks": min(args.chunks, len(allowed) * CHUNKS_PER_DOC),
                        "hybrid": stats(hybrid_t), "lexical_top50": stats(lexical_t), "dense_top50": stats(dense_t)}
        print(f"{label}: hybrid p50 {cells[label]['hybrid']['p50_ms']} ms p99 {cells[label]['hybrid']['p99_ms']} ms", flush=True)
    busy_after = cpu_busy_fraction(2.0)

    # reference peers, on the same queries
    peers: dict[str, Any] = {}
    matrix = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def brute(i: int) -> list[int]:
        sims = matrix @ (qvecs[i] / np.linalg.norm(qvecs[i]))
        top = np.argpartition(-sims, 9)[:10]
        return [int(r) for r in top[np.argsort(-sims[top])]]

    brute_t, brute_top, ours_t, ours_top = [], [], [], []
    for i in range(len(queries)):  # alternating, as above
        t, top = timed(lambda _: brute(i), 1)
        brute_t += t
        brute_top += top
        t, hits = timed(lambda _: index.dense.search(qvecs[i], 10, everything), 1)
        ours_t += t
        ours_top.append([c.document_id * CHUNKS_PER_DOC + c.ordinal for c, _ in hits[0]])
    peers["numpy brute force (dense, no filter)"] = {
        **stats(brute_t), "ours_same_queries": stats(ours_t),
        "top10_agreement": round(statistics.fmean(len(set(a) & set(b)) / 10 for a, b in zip(ours_top, brute_top)), 4)}
    try:
        from rank_bm25 import BM25Okapi
    except ImportError:
        print("rank_bm25 is not installed (pip install rank_bm25): lexical peer skipped", flush=True)
    else:
        t0 = time.perf_counter()
        bm25 = BM25Okapi([analyze(c.search_text) for c in chunks])
        peer_build_s = time.perf_counter() - t0
        n_peer = min(args.peer_queries, len(queries))

        def rank_bm25_top(i: int) -> list[int]:
            scores = bm25.get_scores(analyze(queries[i]))
            top = np.argpartition(-scores, 9)[:10]
            return [int(r) for r in top[np.argsort(-scores[top])]]

        peer_t, peer_top, ours_lex_t, ours_lex = [], [], [], []
        for i in range(n_peer):
            t, top = timed(lambda _: rank_bm25_top(i), 1)
            peer_t += t
            peer_top += top
            t, hits = timed(lambda _: index.lexical.search(queries[i], 10, everything), 1)
            ours_lex_t += t
            ours_lex.append([c.document_id * CHUNKS_PER_DOC + c.ordinal for c, _ in hits[0]])
        peers["rank_bm25 BM25Okapi (lexical, no filter)"] = {
            **stats(peer_t), "build_s": round(peer_build_s, 1), "ours_same_queries": stats(ours_lex_t),
            "top10_agreement": round(statistics.fmean(len(set(a) & set(b)) / 10 for a, b in zip(ours_lex, peer_top)), 4)}

    worst = cells["all documents"]["hybrid"]
    data = {"benchmark": NAME, "machine": machine(), "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"), "cpu_busy_before": round(busy_before, 2),
            "cpu_busy_after": round(busy_after, 2), "chunks": args.chunks, "documents": n_docs, "dim": DIM, "k": K,
            "candidates_per_list": 50, "index_build_s": round(build_s, 1), "cells": cells, "peers": peers,
            "target": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS,
                       "met": worst["p50_ms"] <= TARGET_P50_MS and worst["p99_ms"] <= TARGET_P99_MS}}
    write_results(args.name, data, markdown(data, args))


def markdown(data: dict[str, Any], args: argparse.Namespace) -> str:
    m = data["machine"]
    lines = [
        "# Retrieval latency of the embedded default (issue 13)", "",
        (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, numpy {np.__version__} "
         f"(OpenBLAS threads: {data['blas_threads']}), "
         f"{m['date']}. CPU busy (other processes) {data['cpu_busy_before']:.0%} before and {data['cpu_busy_after']:.0%} after the measurement."),
        "",
        (f"{data['chunks']:,} synthetic chunks in {data['documents']} documents (120–200 Zipf-distributed words, 384-dim vectors), "
        f"{args.queries} questions, k = {data['k']}, {data['candidates_per_list']} candidates per list fused by RRF. "
        f"Index built from chunks + vectors in {data['index_build_s']} s. Query embedding not included. "
        f"Target: p50 ≤ {TARGET_P50_MS:g} ms and p99 ≤ {TARGET_P99_MS:g} ms → **{'met' if data['target']['met'] else 'missed'}** "
        "(worst case: a caller who may see all documents)."), "",
        "| caller may see | chunks | hybrid p50 | hybrid p99 | BM25 top 50 p50 / p99 | dense top 50 p50 / p99 |",
        "|---|---|---|---|---|---|",
    ]
    for label, c in data["cells"].items():
        lines.append(f"| {label} | {c['allowed_chunks']:,} | **{c['hybrid']['p50_ms']:.1f} ms** | **{c['hybrid']['p99_ms']:.1f} ms** | "
                     f"{c['lexical_top50']['p50_ms']:.1f} / {c['lexical_top50']['p99_ms']:.1f} ms | "
                     f"{c['dense_top50']['p50_ms']:.1f} / {c['dense_top50']['p99_ms']:.1f} ms |")
    lines += ["", "Reference peers, same queries, same process:", "",
              "| peer | queries | p50 | p99 | Flexi's half, same queries (p50 / p99) | top-10 agreement with Flexi |", "|---|---|---|---|---|---|"]
    for label, p in data["peers"].items():
        ours = p["ours_same_queries"]
        ours_txt = f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f} ms (top 10, filtered by all documents)"
        lines.append(f"| {label} | {p['n']} | {p['p50_ms']:.1f} ms | {p['p99_ms']:.1f} ms | {ours_txt} | {p['top10_agreement']:.3f} |")
    lines += ["", f"`python -m benchmarks.bench_retrieval --chunks {data['chunks']} --queries {args.queries}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
