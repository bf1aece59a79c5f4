"""Hybrid retrieval: lexical BM25 and dense similarity, fused by reciprocal rank fusion (RRF).

RRF (Cormack, Clarke and Büttcher, SIGIR 2009) scores an item by the sum over the ranked lists of
1 / (k + rank), with k = 60. It needs no score calibration between BM25 (unbounded) and cosine
similarity (−1…1), which is why it is the default way to fuse them: an item ranked high by either list
comes out high, one ranked high by both comes out highest.

`HybridIndex` keeps the two indexes of the embedded default together, so a document is added to and
removed from both at once; it can be rebuilt at any time from chunks and their vectors (`from_chunks`),
which is how it is restored after a restart from what the database stores.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from flexi.rag.chunking import Chunk, DocumentId
from flexi.rag.dense import DenseIndex
from flexi.rag.lexical import LexicalIndex

K = TypeVar("K", bound=Hashable)

RRF_K = 60
DEFAULT_CANDIDATES = 50  # from each list, before fusion


def reciprocal_rank_fusion(rankings: Iterable[Sequence[K]], k: int = RRF_K) -> list[tuple[K, float]]:
    """Items of all `rankings` (each best first) by fused score, best first; ties keep first-seen order."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk: fused score, and its 1-based rank and raw score in each list (None when absent)."""

    chunk: Chunk
    score: float
    lexical_rank: int | None
    dense_rank: int | None
    lexical_score: float | None
    dense_score: float | None


def hybrid_search(lexical: LexicalIndex, dense: DenseIndex | None, query: str,
                  query_vector: np.ndarray | Sequence[float] | None, k: int,
                  allowed_docs: Collection[DocumentId], *, candidates: int = DEFAULT_CANDIDATES,
                  rrf_k: int = RRF_K) -> list[Hit]:
    """The `k` best chunks by RRF of BM25 and cosine similarity, among the documents in `allowed_docs` only.

    Each index returns its best `max(candidates, k)` chunks already filtered by `allowed_docs`, so chunks
    the caller may not see never enter the fusion. Without a query vector (or a dense index) the result is
    BM25 alone, still as `Hit`s.
    """
    if k <= 0:
        return []
    allowed = allowed_docs if isinstance(allowed_docs, (set, frozenset)) else set(allowed_docs)
    depth = max(candidates, k)
    lexical_hits = lexical.search(query, depth, allowed)
    dense_hits = dense.search(query_vector, depth, allowed) if dense is not None and query_vector is not None else []
    by_key: dict[tuple[DocumentId, int], Chunk] = {}
    ranks: list[dict[tuple[DocumentId, int], tuple[int, float]]] = []
    for hits in (lexical_hits, dense_hits):
        ranked = {}
        for rank, (chunk, score) in enumerate(hits, start=1):
            key = (chunk.document_id, chunk.ordinal)
            by_key.setdefault(key, chunk)
            ranked[key] = (rank, score)
        ranks.append(ranked)
    lexical_ranks, dense_ranks = ranks
    fused = reciprocal_rank_fusion([list(lexical_ranks), list(dense_ranks)], k=rrf_k)[:k]
    out = []
    for key, score in fused:
        lex, den = lexical_ranks.get(key), dense_ranks.get(key)
        out.append(Hit(by_key[key], score, lex[0] if lex else None, den[0] if den else None,
                       lex[1] if lex else None, den[1] if den else None))
    return out


class HybridIndex:
    """The embedded default: a BM25 index and a dense index over the same chunks, changed together."""

    def __init__(self, dim: int, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.lexical = LexicalIndex(k1=k1, b=b)
        self.dense = DenseIndex(dim)

    @classmethod
    def from_chunks(cls, chunks: Sequence[Chunk], vectors: np.ndarray | Sequence[Sequence[float]],
                    dim: int | None = None, **options: float) -> HybridIndex:
        """Rebuild from chunks and their embeddings (row i belongs to chunk i), e.g. as stored in the database."""
        dense = DenseIndex.from_chunks(chunks, vectors, dim)
        index = cls(dense.dim, **options)
        index.dense = dense
        index.lexical.add(chunks)
        return index

    def __len__(self) -> int:
        return len(self.lexical)

    def add(self, chunks: Sequence[Chunk], vectors: np.ndarray | Sequence[Sequence[float]]) -> None:
        """Index chunks with their embeddings; documents already indexed are replaced (a re-upload)."""
        self.dense.add(chunks, vectors)  # validates the vectors before either index changes
        self.lexical.add(chunks)

    def remove(self, document_id: DocumentId) -> int:
        """Remove a document's chunks and vectors from both indexes; returns how many chunks there were."""
        self.dense.remove(document_id)
        return self.lexical.remove(document_id)

    def hybrid_search(self, query: str, query_vector: np.ndarray | Sequence[float] | None, k: int,
                      allowed_docs: Collection[DocumentId], *, candidates: int = DEFAULT_CANDIDATES) -> list[Hit]:
        return hybrid_search(self.lexical, self.dense, query, query_vector, k, allowed_docs, candidates=candidates)
