"""The campus-scale index: chunks searched inside PostgreSQL, with pgvector for the dense part.

Why in the database: the chunk rows already live there (flexi.db `document_chunks`), so the index changes
in the same transaction as the rows (a deleted document's chunks and vectors go with the rows, by the
foreign key's cascade), the caller's rights are one `document_id = ANY(…)` in the same SQL, and the
campus's backups and replicas cover it without a second server (see docs/architecture.md).

Same ranking as the embedded default (flexi.rag.fusion.HybridIndex), so switching `FLEXI_RAG_INDEX` does
not change answers:
- lexical: Okapi BM25 with the same analyser (flexi.rag.lexical.analyze), k1, b and Lucene IDF. Each row
  carries its analysed terms as a `tsvector` (term → as many positions as occurrences, so the term
  frequency is the number of positions) and their count; a GIN index finds the rows that contain a query
  term, and the score is summed in SQL. N, document frequencies and the average length are taken over the
  `allowed` documents — the ready documents of one assistant, exactly what the per-assistant index in
  memory holds;
- dense: cosine similarity (pgvector's `<=>`), only rows embedded by the query's `embedding_model`;
- both lists `max(candidates, k)` deep, fused by RRF (k = 60); ties in each list go to the earlier
  (document id, ordinal), as in memory. Scores are summed in double precision here and in float32 in
  memory, so they are compared at float32 precision: two chunks the embedded index scores alike are a
  tie here too. What still differs at 50,000 chunks (bench_pgindex: a different top 5 for under 2 % of
  the queries) is which of several chunks with the same score becomes the 50th candidate: here always
  the earliest, in memory whichever numpy's argpartition leaves there.

Exact search, no HNSW/IVFFlat: every query is restricted to one assistant's documents (the btree on
`document_id`), so PostgreSQL scans that course's few thousand rows, a few milliseconds (measured in
benchmarks/bench_pgindex.py). An approximate index would be searched first and filtered afterwards:
with 50 courses it returns `ef_search` (40) neighbours of which about one in 50 belongs to the course,
so a search would miss most of its results — the wrong trade-off for a filter this selective.

Without pgvector (the column is missing, see migration 0006) the dense part reads the assistant's stored
embeddings and ranks them here, exactly; slower, but the same results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flexi.rag.chunking import HEADING_SEPARATOR, Chunk
from flexi.rag.fusion import DEFAULT_CANDIDATES, RRF_K, Hit, reciprocal_rank_fusion
from flexi.rag.lexical import analyze

MAX_LEXEME_BYTES = 2046  # PostgreSQL refuses longer tsvector lexemes; such "words" (base64, hashes) are not indexed
MAX_POSITIONS = 256  # per lexeme in a tsvector: the term frequency saturates there (chunks hold ~200 tokens)
_BACKFILL_BATCH = 500


def pgvector_available(engine: sa.Engine) -> bool:
    """Whether the PostgreSQL server behind `engine` offers the pgvector extension (installed or not)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first() is not None


def _has_vector_column(connection: sa.Connection) -> bool:
    return connection.execute(sa.text(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'document_chunks' AND column_name = 'embedding_vec'")).first() is not None


def _lexeme(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _indexable(term: str) -> bool:
    return len(term.encode()) <= MAX_LEXEME_BYTES


def terms_tsvector(text: str) -> tuple[str, int]:
    """The tsvector literal of `text`'s analysed terms (positions 1…tf per term) and the number of terms."""
    terms = analyze(text)
    counts = Counter(t for t in terms if _indexable(t))
    literal = " ".join(f"{_lexeme(t)}:{','.join(map(str, range(1, min(n, MAX_POSITIONS) + 1)))}" for t, n in counts.items())
    return literal, len(terms)


def _vector_literal(data: bytes | None) -> str | None:
    """pgvector's text form of float32 little-endian bytes (9 significant digits: float32 round-trips)."""
    if not data or len(data) % 4:
        return None
    vector = np.frombuffer(data, dtype="<f4")
    if not np.isfinite(vector).all():
        return None
    return "[" + ",".join(f"{x:.9g}" for x in vector.tolist()) + "]"


def _search_text(heading: str, text: str) -> str:
    return f"{heading}\n{text}" if heading else text  # Chunk.search_text, from the stored columns


_LEXICAL = sa.text("""
WITH stats AS (
    SELECT count(*)::float8 AS n, coalesce(avg(search_length), 0)::float8 AS avgdl
    FROM document_chunks WHERE document_id = ANY(CAST(:allowed AS bigint[]))
), matches AS (
    SELECT c.id, c.document_id, c.ordinal, c.search_length::float8 AS dl, t.lexeme,
           array_length(t.positions, 1)::float8 AS tf
    FROM document_chunks c, unnest(c.search_terms) AS t
    WHERE c.document_id = ANY(CAST(:allowed AS bigint[])) AND c.search_terms @@ CAST(:tsquery AS tsquery)
      AND t.lexeme = ANY(CAST(:terms AS text[]))
), df AS (
    SELECT lexeme, count(*)::float8 AS df FROM matches GROUP BY lexeme
), query AS (
    SELECT * FROM unnest(CAST(:terms AS text[]), CAST(:qtfs AS float8[])) AS q(lexeme, qtf)
), scored AS (
    SELECT m.id, m.document_id, m.ordinal,
           sum(query.qtf * ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5)) * (:k1 + 1) * m.tf
               / (m.tf + :k1 * (1 - :b + :b * m.dl / nullif(stats.avgdl, 0)))) AS score
    FROM matches m JOIN df USING (lexeme) JOIN query USING (lexeme) CROSS JOIN stats
    GROUP BY m.id, m.document_id, m.ordinal
)
SELECT id, score FROM scored
ORDER BY CAST(score AS real) DESC, document_id, ordinal  -- equal in float32 (the in-memory index's precision): a tie
LIMIT :depth
""")

_DENSE = sa.text("""
SELECT id, 1 - distance AS similarity FROM (
    SELECT id, document_id, ordinal,
           CASE WHEN d = 'NaN'::float8 THEN 1 ELSE d END AS distance  -- a zero vector: similarity 0, as in memory
    FROM (SELECT id, document_id, ordinal, embedding_vec <=> CAST(:vector AS vector) AS d
          FROM document_chunks
          WHERE document_id = ANY(CAST(:allowed AS bigint[])) AND embedding_model = :model
            AND embedding_vec IS NOT NULL AND vector_dims(embedding_vec) = :dim) AS scored
) AS ranked
ORDER BY CAST(distance AS real), document_id, ordinal
LIMIT :depth
""")

_EMBEDDINGS = sa.text("""
SELECT id, embedding FROM document_chunks
WHERE document_id = ANY(CAST(:allowed AS bigint[])) AND embedding_model = :model AND embedding IS NOT NULL
ORDER BY document_id, ordinal
""")

_CHUNKS = sa.text("""
SELECT c.id, c.document_id, d.name, c.page, c.heading, c.text, c.ordinal
FROM document_chunks c JOIN assistant_documents d ON d.id = c.document_id
WHERE c.id = ANY(CAST(:ids AS bigint[]))
""")


class PostgresChunkIndex:
    """Hybrid search over `document_chunks` in PostgreSQL; the rows are the index, nothing is cached here."""

    def __init__(self, engine: sa.Engine, *, candidates: int = DEFAULT_CANDIDATES, rrf_k: int = RRF_K,
                 k1: float = 1.2, b: float = 0.75) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("the PostgreSQL chunk index needs a PostgreSQL database (FLEXI_DATABASE_URL)")
        self._engine = engine
        self.candidates, self.rrf_k, self.k1, self.b = candidates, rrf_k, k1, b
        with engine.connect() as connection:
            self.vectors = _has_vector_column(connection)  # pgvector in this database (migration 0006)
        self.backfill()

    # --- writing ------------------------------------------------------------------------------------------------

    def stored(self, session: Session, document_id: int) -> None:
        """Fill the search columns of a document's chunk rows, in the transaction that wrote (and flushed) them."""
        rows = session.execute(sa.text("SELECT id, heading, text, embedding FROM document_chunks WHERE document_id = :d"),
                               {"d": document_id}).all()
        self._fill(session.connection(), rows)

    def backfill(self) -> int:
        """Fill the search columns of rows stored before this index was in use (e.g. under FLEXI_RAG_INDEX=memory,
        or before pgvector was installed); returns how many rows it filled."""
        missing = "search_terms IS NULL" + (" OR (embedding_vec IS NULL AND embedding IS NOT NULL)" if self.vectors else "")
        done, last = 0, 0
        while True:
            with self._engine.begin() as connection:
                rows = connection.execute(sa.text(
                    f"SELECT id, heading, text, embedding FROM document_chunks WHERE id > :last AND ({missing}) "
                    "ORDER BY id LIMIT :n"), {"last": last, "n": _BACKFILL_BATCH}).all()
                if not rows:
                    return done
                self._fill(connection, rows)
            done, last = done + len(rows), rows[-1].id

    def _fill(self, connection: sa.Connection, rows: Sequence[Any]) -> None:
        if not rows:
            return
        params = []
        for row in rows:
            terms, length = terms_tsvector(_search_text(row.heading, row.text))
            params.append({"id": row.id, "terms": terms, "length": length, "vector": _vector_literal(row.embedding)})
        vector = ", embedding_vec = CAST(:vector AS vector)" if self.vectors else ""
        connection.execute(sa.text(f"UPDATE document_chunks SET search_terms = CAST(:terms AS tsvector), "
                                   f"search_length = :length{vector} WHERE id = :id"), params)

    def forget(self, document_id: int) -> None:
        """Nothing is cached in memory: the rows (deleted by cascade) are the index."""

    # --- searching ----------------------------------------------------------------------------------------------

    def search(self, assistant_id: int, allowed: Collection[int], query: str, query_vector: np.ndarray | None,
               embedding_model: str | None, k: int) -> list[Hit]:
        """The `k` best chunks of the documents in `allowed` (the assistant's, filtered by the caller's rights;
        `assistant_id` is not needed: the ids are) by RRF of BM25 and cosine similarity (see the module
        docstring); BM25 alone without a query vector or embedding model."""
        if k <= 0 or not allowed:
            return []
        depth = max(self.candidates, k)
        ids = sorted(int(d) for d in allowed)
        with self._engine.connect() as connection:
            lexical = self._lexical(connection, ids, query, depth)
            dense = self._dense(connection, ids, query_vector, embedding_model, depth) \
                if query_vector is not None and embedding_model is not None else []
            lexical_ranks = {row_id: (rank, score) for rank, (row_id, score) in enumerate(lexical, start=1)}
            dense_ranks = {row_id: (rank, score) for rank, (row_id, score) in enumerate(dense, start=1)}
            fused = reciprocal_rank_fusion([list(lexical_ranks), list(dense_ranks)], k=self.rrf_k)[:k]
            chunks = self._chunks(connection, [row_id for row_id, _ in fused])
        hits = []
        for row_id, score in fused:
            if row_id not in chunks:  # its document was deleted between the two queries
                continue
            lex, den = lexical_ranks.get(row_id), dense_ranks.get(row_id)
            hits.append(Hit(chunks[row_id], score, lex[0] if lex else None, den[0] if den else None,
                            lex[1] if lex else None, den[1] if den else None))
        return hits

    def _lexical(self, connection: sa.Connection, allowed: list[int], query: str, depth: int) -> list[tuple[int, float]]:
        counts = Counter(t for t in analyze(query) if _indexable(t))
        if not counts:
            return []
        terms = list(counts)
        rows = connection.execute(_LEXICAL, {
            "allowed": allowed, "terms": terms, "qtfs": [float(counts[t]) for t in terms],
            "tsquery": " | ".join(_lexeme(t) for t in terms), "k1": self.k1, "b": self.b, "depth": depth}).all()
        return [(row.id, float(row.score)) for row in rows]

    def _dense(self, connection: sa.Connection, allowed: list[int], query_vector: np.ndarray, model: str,
               depth: int) -> list[tuple[int, float]]:
        vector = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        if not vector.size or not norm or not np.isfinite(norm):
            return []
        if self.vectors:
            rows = connection.execute(_DENSE, {"allowed": allowed, "model": model, "dim": int(vector.size),
                                               "vector": _vector_literal(vector.astype("<f4").tobytes()),
                                               "depth": depth}).all()
            return [(row.id, float(row.similarity)) for row in rows]
        return _rank_in_python(connection.execute(_EMBEDDINGS, {"allowed": allowed, "model": model}).all(),
                               vector / norm, depth)

    def _chunks(self, connection: sa.Connection, ids: list[int]) -> dict[int, Chunk]:
        if not ids:
            return {}
        return {row.id: Chunk(document_id=row.document_id, document=row.name, page=row.page,
                              heading_path=tuple(row.heading.split(HEADING_SEPARATOR)) if row.heading else (),
                              text=row.text, ordinal=row.ordinal)
                for row in connection.execute(_CHUNKS, {"ids": ids})}


def _rank_in_python(rows: Iterable[Any], query: np.ndarray, depth: int) -> list[tuple[int, float]]:
    """Exact cosine ranking of stored embeddings (rows in (document id, ordinal) order), like flexi.rag.dense."""
    ids, vectors = [], []
    for row in rows:
        vector = np.frombuffer(row.embedding, dtype="<f4") if len(row.embedding) % 4 == 0 else None
        if vector is not None and vector.shape == query.shape and np.isfinite(vector).all():
            ids.append(row.id)
            vectors.append(vector)
    if not ids:
        return []
    matrix = np.vstack(vectors)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    sims = (matrix / np.where(norms > 0, norms, 1.0)) @ query
    order = np.lexsort((np.arange(len(ids)), -sims))[:depth]
    return [(ids[i], float(sims[i])) for i in order]
