"""Dense retrieval in memory: cosine similarity of float32 embeddings, filtered by the caller's documents.

Vectors are normalised when added, so cosine similarity is one matrix-vector product. The rows live in one
contiguous float32 matrix that grows by doubling (50,000 chunks of 384 dimensions, all-MiniLM-L6-v2's
size, take 73 MiB). A search restricted to a few documents multiplies only their rows; otherwise the whole
matrix is multiplied and the rows the caller may not see are dropped before ranking. Exact search: at
course scale (thousands to tens of thousands of chunks per server) brute force is a few milliseconds and
needs no approximate index to tune; campus scale belongs to the server engine (issue 13, item 4).
Removing a document marks its rows dead; the matrix is compacted once more than half of it is dead.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

import numpy as np

from flexi.rag.chunking import Chunk, DocumentId

_COMPACT_MIN_DEAD = 1024
_SUBSET_SHARE = 0.25  # below this share of rows, gather and multiply only the allowed rows (gathering costs a copy)


class DenseIndex:
    """Exact cosine-similarity search over chunk embeddings of one dimension; thread-safe."""

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._lock = threading.RLock()
        self._reset(capacity=1024)

    @classmethod
    def from_chunks(cls, chunks: Sequence[Chunk], vectors: np.ndarray | Sequence[Sequence[float]],
                    dim: int | None = None) -> DenseIndex:
        """An index of `chunks` with their embeddings (row i belongs to chunk i)."""
        matrix = np.asarray(vectors, dtype=np.float32)
        if dim is None:
            if matrix.ndim != 2:
                raise ValueError("give dim, or vectors as a 2-D array")
            dim = matrix.shape[1]
        index = cls(dim)
        index.add(chunks, matrix.reshape(-1, dim) if matrix.size else np.empty((0, dim), np.float32))
        return index

    def _reset(self, capacity: int) -> None:
        self._matrix = np.zeros((capacity, self.dim), dtype=np.float32)
        self._alive = np.zeros(capacity, dtype=bool)
        self._doc_code = np.zeros(capacity, dtype=np.int32)
        self._chunks: list[Chunk | None] = []
        self._codes: dict[DocumentId, int] = {}
        self._rows_of: dict[DocumentId, list[int]] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    @property
    def documents(self) -> set[DocumentId]:
        return set(self._rows_of)

    def add(self, chunks: Sequence[Chunk], vectors: np.ndarray | Sequence[Sequence[float]]) -> None:
        """Index `chunks` with their embeddings; a document's chunks already in the index are replaced first."""
        matrix = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim) if len(chunks) else np.empty((0, self.dim), np.float32)
        if matrix.shape != (len(chunks), self.dim):
            raise ValueError(f"expected {len(chunks)} vectors of dimension {self.dim}, got shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise ValueError("vectors must be finite")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms > 0, norms, 1.0)  # a zero vector stays zero: similarity 0 to everything
        with self._lock:
            for document_id in {c.document_id for c in chunks}:
                self._remove(document_id)
            start = len(self._chunks)
            self._grow(start + len(chunks))
            self._matrix[start:start + len(chunks)] = matrix
            self._alive[start:start + len(chunks)] = True
            for i, chunk in enumerate(chunks):
                code = self._codes.setdefault(chunk.document_id, len(self._codes))
                self._doc_code[start + i] = code
                self._rows_of.setdefault(chunk.document_id, []).append(start + i)
                self._chunks.append(chunk)
            self._live += len(chunks)

    def _grow(self, rows: int) -> None:
        capacity = len(self._alive)
        if rows <= capacity:
            return
        while capacity < rows:
            capacity *= 2
        matrix = np.zeros((capacity, self.dim), dtype=np.float32)
        matrix[: len(self._chunks)] = self._matrix[: len(self._chunks)]
        alive = np.zeros(capacity, dtype=bool)
        alive[: len(self._chunks)] = self._alive[: len(self._chunks)]
        codes = np.zeros(capacity, dtype=np.int32)
        codes[: len(self._chunks)] = self._doc_code[: len(self._chunks)]
        self._matrix, self._alive, self._doc_code = matrix, alive, codes

    def remove(self, document_id: DocumentId) -> int:
        """Forget a document's chunks and vectors; returns how many there were."""
        with self._lock:
            removed = self._remove(document_id)
            dead = len(self._chunks) - self._live
            if dead > self._live and dead >= _COMPACT_MIN_DEAD:
                self._compact()
            return removed

    def _remove(self, document_id: DocumentId) -> int:
        rows = self._rows_of.pop(document_id, [])
        for row in rows:
            self._alive[row] = False
            self._matrix[row] = 0.0  # the vector is gone, not only hidden
            self._chunks[row] = None
        self._live -= len(rows)
        return len(rows)

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[: len(self._chunks)])
        chunks = [self._chunks[r] for r in keep]
        matrix = self._matrix[keep]
        self._reset(capacity=max(1024, len(keep)))
        self._matrix[: len(keep)] = matrix
        self._alive[: len(keep)] = True
        for i, chunk in enumerate(chunks):
            assert chunk is not None
            code = self._codes.setdefault(chunk.document_id, len(self._codes))
            self._doc_code[i] = code
            self._rows_of.setdefault(chunk.document_id, []).append(i)
            self._chunks.append(chunk)
        self._live = len(keep)

    def search(self, query_vector: np.ndarray | Sequence[float], k: int,
               allowed_docs: Collection[DocumentId]) -> list[tuple[Chunk, float]]:
        """The `k` chunks most similar to `query_vector` among `allowed_docs`, best first, with cosine similarity.

        `allowed_docs` is required: the caller's rights are applied here, never after the ranking.
        """
        query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if query.shape != (self.dim,):
            raise ValueError(f"expected a query vector of dimension {self.dim}, got shape {query.shape}")
        norm = float(np.linalg.norm(query))
        if k <= 0 or not norm or not np.isfinite(norm):
            return []
        query = query / norm
        with self._lock:
            n = len(self._chunks)
            allowed = [self._rows_of[d] for d in allowed_docs if d in self._rows_of]
            count = sum(len(rows) for rows in allowed)
            if not count:
                return []
            if count < _SUBSET_SHARE * n:
                rows = np.fromiter((r for rs in allowed for r in rs), dtype=np.int64, count=count)
                sims = self._matrix[rows] @ query
            else:
                visible = self._alive[:n]
                if count < self._live:
                    codes = [self._codes[d] for d in allowed_docs if d in self._rows_of]
                    visible = visible & np.isin(self._doc_code[:n], codes)
                rows = np.flatnonzero(visible)
                sims = (self._matrix[:n] @ query)[rows]
            if len(rows) > k:
                part = np.argpartition(-sims, k - 1)[:k]
                rows, sims = rows[part], sims[part]
            order = np.lexsort((rows, -sims))
            return [(self._chunks[r], float(sims[i])) for i, r in ((i, int(rows[i])) for i in order)]  # type: ignore[misc]
