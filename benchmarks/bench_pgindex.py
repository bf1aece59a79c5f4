"""Retrieval latency of the campus-scale index (PostgreSQL + pgvector, flexi.rag.pgindex) at 50,000 chunks,
next to the embedded default on the same chunks, vectors and queries.

The corpus is bench_retrieval's (500 documents of 100 chunks of 120–200 Zipf-distributed German/English
course words, random 384-dimension vectors: all-MiniLM-L6-v2's size), spread over 50 assistants of 10
documents (1,000 chunks each). Every query is one student's search in one assistant's documents (k = 5,
50 candidates per list, RRF), which is what the server does; query embedding is not included.

Measured in one process after warm-up, the variants taking turns query by query (so a burst of another
process on a shared machine hits all of them alike):
- `PostgresChunkIndex.search` (BM25 and exact cosine in SQL, fused in Python) and its two SQL halves;
- the embedded default as the library uses it: one `HybridIndex` per assistant, same queries;
- agreement: share of queries whose top 5 is the same list (ids and order) in both;
- why exact and not HNSW: the same dense queries through an HNSW index (pgvector defaults m = 16,
  ef_construction = 64, ef_search = 40) — how many of the 50 requested rows come back once the filter to
  one assistant is applied, recall against exact search, latency.

The PostgreSQL server is started from the `pgserver` wheel's binaries (PostgreSQL 16 + pgvector 0.6.2, the
test extra) in a temporary directory, as the tests do, or given with --url.

    pip install -e '.[test]'
    python -m benchmarks.bench_pgindex [--chunks 50000] [--queries 500] [--url postgresql+psycopg://…]

Writes benchmarks/results/pgindex.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from benchmarks.bench_retrieval import CHUNKS_PER_DOC, DIM, corpus, stats
from benchmarks.common import cpu_busy_fraction, machine, wait_for_quiet_cpu, write_results
from flexi.db.engine import make_engine
from flexi.db.migrate import upgrade
from flexi.rag.chunking import Chunk
from flexi.rag.fusion import HybridIndex
from flexi.rag.pgindex import _DENSE, PostgresChunkIndex, _vector_literal

NAME = "pgindex"
ASSISTANTS = 50
K = 5
DEPTH = 50
MODEL = "all-minilm-l6-v2"


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.pg import pgvector_bin, running_postgres  # the tests' throwaway server, from the pgserver wheel

    found = pgvector_bin()
    if found is None:
        raise SystemExit("pgserver is not installed (pip install -e '.[test]'), and no --url was given")
    with running_postgres(*found) as server:
        yield server.url(server.create_database())


def load(engine: sa.Engine, chunks: list[Chunk], vectors: np.ndarray, n_docs: int) -> float:
    """Assistants, documents and chunk rows (embedding bytes, as ingestion stores them) by COPY; returns seconds."""
    t0 = time.perf_counter()
    per_assistant = -(-n_docs // ASSISTANTS)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO courses (id, name) SELECT g, 'course-' || g FROM generate_series(1, :n) g"), {"n": ASSISTANTS})
        c.execute(sa.text("INSERT INTO assistants (id, slug, course_id, name, model) "
                          "SELECT g, 'assistant-' || g, g, 'A' || g, 'm' FROM generate_series(1, :n) g"), {"n": ASSISTANTS})
        c.execute(sa.text("INSERT INTO assistant_documents (id, assistant_id, name, sha256, status) "
                          "SELECT g, (g - 1) / :per + 1, 'skript-' || g || '.pdf', repeat('0', 64), 'ready' "
                          "FROM generate_series(1, :n) g"), {"per": per_assistant, "n": n_docs})
    raw = engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy("COPY document_chunks (document_id, ordinal, page, heading, text, embedding, embedding_model) "
                         "FROM STDIN") as copy:
            for chunk, vector in zip(chunks, vectors, strict=True):
                copy.write_row((chunk.document_id, chunk.ordinal, chunk.page, chunk.heading, chunk.text,
                                vector.astype("<f4").tobytes(), MODEL))
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--url", help="an existing PostgreSQL with pgvector (default: start one from the pgserver wheel)")
    parser.add_argument("--no-hnsw", action="store_true", help="skip the HNSW comparison (its build takes a while)")
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args()

    print(f"building a synthetic corpus of {args.chunks} chunks ...", flush=True)
    base, vectors, all_queries = corpus(args.chunks)
    chunks = [Chunk(c.document_id + 1, c.document, c.page, c.heading_path, c.text, c.ordinal) for c in base]  # ids from 1
    n_docs = -(-args.chunks // CHUNKS_PER_DOC)
    per_assistant = -(-n_docs // ASSISTANTS)
    docs_of = {a: frozenset(range((a - 1) * per_assistant + 1, min(a * per_assistant, n_docs) + 1)) for a in range(1, ASSISTANTS + 1)}
    rng = np.random.default_rng(5)
    qvecs = rng.standard_normal((len(all_queries), DIM), dtype=np.float32)
    assistants = rng.integers(1, ASSISTANTS + 1, size=len(all_queries))

    with database(args.url) as url, tempfile.TemporaryDirectory() as home:
        engine = make_engine(url, Path(home))
        upgrade(engine)
        load_s = load(engine, chunks, vectors, n_docs)
        print(f"loaded in {load_s:.1f} s", flush=True)
        t0 = time.perf_counter()
        index = PostgresChunkIndex(engine)  # fills the search columns of every row (what `stored` does per document)
        fill_s = time.perf_counter() - t0
        assert index.vectors, "this PostgreSQL has no pgvector"
        with engine.begin() as c:
            c.execute(sa.text("ANALYZE document_chunks"))
            size = c.execute(sa.text("SELECT pg_total_relation_size('document_chunks')")).scalar_one()
            server_version = c.execute(sa.text("SHOW server_version")).scalar_one()
            pgvector_version = c.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar_one()
        print(f"search columns filled in {fill_s:.1f} s", flush=True)

        t0 = time.perf_counter()
        memory: dict[int, HybridIndex] = {}
        rows_of: dict[int, list[int]] = {}
        for a, docs in docs_of.items():
            rows = [i for i, c in enumerate(chunks) if c.document_id in docs]
            rows_of[a] = rows
            memory[a] = HybridIndex.from_chunks([chunks[i] for i in rows], vectors[rows])
        memory_build_s = time.perf_counter() - t0

        queries = all_queries[: args.queries]
        for i in range(20):  # warm-up
            j = len(all_queries) - 1 - i
            index.search(0, docs_of[int(assistants[j])], all_queries[j], qvecs[j], MODEL, K)
            memory[int(assistants[j])].hybrid_search(all_queries[j], qvecs[j], K, docs_of[int(assistants[j])])

        busy_before = wait_for_quiet_cpu(timeout=120)
        pg_t, lex_t, dense_t, mem_t = [], [], [], []
        same = 0
        with engine.connect() as connection:
            for i, query in enumerate(queries):
                allowed = docs_of[int(assistants[i])]
                ids = sorted(allowed)
                t0 = time.perf_counter()
                got = index.search(0, allowed, query, qvecs[i], MODEL, K)
                pg_t.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                index._lexical(connection, ids, query, DEPTH)
                lex_t.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                index._dense(connection, ids, qvecs[i], MODEL, DEPTH)
                dense_t.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                expected = memory[int(assistants[i])].hybrid_search(query, qvecs[i], K, allowed)
                mem_t.append((time.perf_counter() - t0) * 1000)
                same += [(h.chunk.document_id, h.chunk.ordinal) for h in got] == \
                        [(h.chunk.document_id, h.chunk.ordinal) for h in expected]
        busy_after = cpu_busy_fraction(2.0)
        print(f"postgres hybrid p50 {statistics.median(pg_t):.1f} ms, memory {statistics.median(mem_t):.2f} ms", flush=True)

        hnsw: dict[str, Any] | None = None if args.no_hnsw else measure_hnsw(engine, queries, qvecs, assistants, docs_of)
        engine.dispose()

    data = {"benchmark": NAME, "machine": machine(), "postgresql": server_version, "pgvector": pgvector_version,
            "cpu_busy_before": round(busy_before, 2), "cpu_busy_after": round(busy_after, 2),
            "chunks": args.chunks, "documents": n_docs, "assistants": ASSISTANTS,
            "chunks_per_assistant": len(rows_of[1]), "dim": DIM, "k": K, "candidates_per_list": DEPTH,
            "load_copy_s": round(load_s, 1), "fill_search_columns_s": round(fill_s, 1),
            "fill_rows_per_s": round(args.chunks / fill_s), "table_mib": round(size / 2**20, 1),
            "memory_build_s": round(memory_build_s, 1),
            "postgres": {"hybrid": stats(pg_t), "lexical_top50": stats(lex_t), "dense_top50": stats(dense_t)},
            "memory": {"hybrid": stats(mem_t)},
            "same_top5_share": round(same / len(queries), 4), "hnsw": hnsw,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    write_results(args.name, data, markdown(data, args))


def measure_hnsw(engine: sa.Engine, queries: list[str], qvecs: np.ndarray, assistants: np.ndarray,
                 docs_of: dict[int, frozenset[int]]) -> dict[str, Any]:
    """The dense query filtered to one assistant, through an HNSW index (pgvector defaults) vs exact: once as the
    planner chooses, once with HNSW forced (the btree on document_id dropped inside a transaction rolled back)."""
    print("building an HNSW index (m 16, ef_construction 64) ...", flush=True)
    t0 = time.perf_counter()
    with engine.begin() as c:
        c.execute(sa.text(f"CREATE INDEX bench_hnsw ON document_chunks USING hnsw "
                          f"((embedding_vec::vector({DIM})) vector_cosine_ops)"))
        c.execute(sa.text("ANALYZE document_chunks"))
    build_s = time.perf_counter() - t0
    approximate = sa.text(f"""
        SELECT id FROM document_chunks
        WHERE document_id = ANY(CAST(:allowed AS bigint[])) AND embedding_model = :model
        ORDER BY embedding_vec::vector({DIM}) <=> CAST(:vector AS vector({DIM})) LIMIT :depth""")
    n = min(len(queries), 200)
    params = [{"allowed": sorted(docs_of[int(assistants[i])]), "model": MODEL, "depth": DEPTH,
               "vector": _vector_literal(qvecs[i].astype("<f4").tobytes())} for i in range(n)]

    def run(c: sa.Connection, exact: list[list[int]]) -> dict[str, Any]:
        plan = "\n".join(r[0] for r in c.execute(sa.text("EXPLAIN " + str(approximate)), params[0]))
        returned, recall, times = [], [], []
        for p, truth in zip(params, exact, strict=True):
            t0 = time.perf_counter()
            got = [r.id for r in c.execute(approximate, p)]
            times.append((time.perf_counter() - t0) * 1000)
            returned.append(len(got))
            recall.append(len(set(got) & set(truth)) / len(truth))
        return {"uses_hnsw": "bench_hnsw" in plan, "rows_returned_mean": round(statistics.fmean(returned), 2),
                "recall_at_50_mean": round(statistics.fmean(recall), 4), "latency": stats(times)}

    with engine.connect() as c:
        exact = [[r.id for r in c.execute(_DENSE, {**p, "dim": DIM})] for p in params]
        as_planned = run(c, exact)
        c.rollback()
        c.execute(sa.text("DROP INDEX ix_document_chunks_document_id"))  # only inside this transaction, as is:
        c.execute(sa.text("ALTER TABLE document_chunks DROP CONSTRAINT uq_document_chunks_document_id_ordinal"))
        c.execute(sa.text("SET LOCAL enable_seqscan = off"))
        forced = run(c, exact)
        c.rollback()
    with engine.begin() as c:
        c.execute(sa.text("DROP INDEX bench_hnsw"))
    return {"build_s": round(build_s, 1), "queries": n, "of": DEPTH, "as_planned": as_planned, "forced": forced}


def markdown(data: dict[str, Any], args: argparse.Namespace) -> str:
    m, pg, mem = data["machine"], data["postgres"], data["memory"]
    lines = [
        "# Retrieval latency of the campus-scale index: PostgreSQL + pgvector (issue 13)", "",
        (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
         f"PostgreSQL {data['postgresql']} with pgvector {data['pgvector']} on the same machine (loopback TCP, fsync off: "
         f"the tests' throwaway server), {m['date']}. CPU busy (other processes) {data['cpu_busy_before']:.0%} before and "
         f"{data['cpu_busy_after']:.0%} after the measurement."),
        "",
        (f"{data['chunks']:,} synthetic chunks ({DIM}-dim vectors) in {data['documents']} documents of {data['assistants']} "
         f"assistants ({data['chunks_per_assistant']:,} chunks each); {args.queries} questions, each searching one random "
         f"assistant's documents; k = {data['k']}, {data['candidates_per_list']} candidates per list, RRF. Query embedding "
         "not included. Same queries, same process, taking turns query by query."), "",
        "| index | hybrid p50 | hybrid p90 | hybrid p99 | BM25 top 50 p50 / p99 | dense top 50 p50 / p99 |",
        "|---|---|---|---|---|---|",
        (f"| PostgreSQL (`FLEXI_RAG_INDEX=postgres`) | **{pg['hybrid']['p50_ms']:.1f} ms** | {pg['hybrid']['p90_ms']:.1f} ms | "
         f"**{pg['hybrid']['p99_ms']:.1f} ms** | {pg['lexical_top50']['p50_ms']:.1f} / {pg['lexical_top50']['p99_ms']:.1f} ms | "
         f"{pg['dense_top50']['p50_ms']:.1f} / {pg['dense_top50']['p99_ms']:.1f} ms |"),
        (f"| in memory, one HybridIndex per assistant (`memory`) | **{mem['hybrid']['p50_ms']:.2f} ms** | "
         f"{mem['hybrid']['p90_ms']:.2f} ms | **{mem['hybrid']['p99_ms']:.2f} ms** | | |"),
        "",
        (f"Same top 5 (ids and order) in both: **{data['same_top5_share']:.1%}** of the queries. "
         f"Loading the rows by COPY: {data['load_copy_s']} s; filling the search columns (analysed terms, vector) of all "
         f"rows: {data['fill_search_columns_s']} s ({data['fill_rows_per_s']:,} rows/s — ingestion does this per document, "
         f"in its transaction); table with indexes: {data['table_mib']} MiB. The in-memory indexes were built in "
         f"{data['memory_build_s']} s."),
        "",
    ]
    h = data.get("hnsw")
    if h:
        lines += [
            "## Why exact search, not HNSW", "",
            (f"The same dense queries (top {h['of']} of one assistant's documents, {h['queries']} queries) with an HNSW "
             f"index on the vectors (pgvector defaults: m = 16, ef_construction = 64, ef_search = 40; built in "
             f"{h['build_s']} s):"), "",
            "| plan | uses HNSW | rows returned (of 50) | recall vs exact | p50 | p99 |", "|---|---|---|---|---|---|",
        ]
        for label, cell in (("as the planner chooses", h["as_planned"]), ("HNSW forced", h["forced"])):
            lines.append(f"| {label} | {'yes' if cell['uses_hnsw'] else 'no'} | {cell['rows_returned_mean']} | "
                         f"{cell['recall_at_50_mean']:.3f} | {cell['latency']['p50_ms']:.1f} ms | {cell['latency']['p99_ms']:.1f} ms |")
        lines += ["", ("HNSW walks the graph first and filters afterwards: of the ef_search neighbours only those of the "
                       f"one assistant in {data['assistants']} survive, so it returns a fraction of the rows asked for. "
                       "Exact search over the assistant's rows (btree on document_id) returns all of them, correctly ranked."), ""]
    lines += [f"`python -m benchmarks.bench_pgindex --chunks {data['chunks']} --queries {args.queries}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
