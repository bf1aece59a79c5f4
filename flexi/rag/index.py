"""Where an assistant's chunks are searched: the embedded default in memory, or a server engine.

`ChunkIndex` is the seam. The library writes chunk rows (text and embedding) to the database and asks an
index for the best chunks among the documents a caller may see; it never ranks by itself. Two indexes:

- `MemoryChunkIndex` (default): per assistant a BM25 index and a dense index in this process, loaded
  lazily from the database and reloaded per document whenever its `updated_at` stamp changes — so several
  replicas stay correct without sharing memory, and a restart loses nothing.
- `flexi.rag.pgindex.PostgresChunkIndex`: the rows themselves are the index (pgvector and full-text
  search in PostgreSQL), for a campus with many courses and replicas.

Both fuse the lexical and dense rankings the same way (`flexi.rag.fusion.hybrid_search` semantics).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from flexi.db.models import AssistantDocument, DocumentChunk
from flexi.rag.chunking import HEADING_SEPARATOR, Chunk
from flexi.rag.dense import DenseIndex
from flexi.rag.embedding import from_bytes
from flexi.rag.fusion import Hit, hybrid_search
from flexi.rag.lexical import LexicalIndex

Allowed = Mapping[int, datetime]  # the ready documents a caller may search, with their last change


class ChunkIndex(Protocol):
    def stored(self, session: Session, document_id: int) -> None:
        """Called in the transaction that just wrote (and flushed) a document's chunk rows."""
        ...

    def search(self, assistant_id: int, allowed: Allowed, query: str, query_vector: np.ndarray | None,
               embedding_model: str | None, k: int) -> list[Hit]:
        """The `k` best chunks among the documents in `allowed` (never any other), best first."""
        ...

    def forget(self, document_id: int) -> None:
        """The document was deleted: drop whatever is held for it."""
        ...


def chunk_of(row: DocumentChunk, document: str) -> Chunk:
    return Chunk(row.document_id, document, row.page, tuple(h for h in row.heading.split(HEADING_SEPARATOR) if h),
                 row.text, row.ordinal)


class _Course:
    """One assistant's indexes and which version of each document they hold."""

    def __init__(self) -> None:
        self.lexical = LexicalIndex()
        self.dense: DenseIndex | None = None
        self.model: str | None = None
        self.loaded: dict[int, datetime] = {}


class MemoryChunkIndex:
    """The embedded default (see the module docstring); thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._courses: dict[int, _Course] = {}
        self._course_of: dict[int, int] = {}  # document id → assistant id

    def stored(self, session: Session, document_id: int) -> None:
        """Nothing to do: the next search sees the new `updated_at` and reloads the document."""

    def forget(self, document_id: int) -> None:
        with self._lock:
            course = self._courses.get(self._course_of.pop(document_id, -1))
            if course is not None and course.loaded.pop(document_id, None) is not None:
                course.lexical.remove(document_id)
                if course.dense is not None:
                    course.dense.remove(document_id)

    def search(self, assistant_id: int, allowed: Allowed, query: str, query_vector: np.ndarray | None,
               embedding_model: str | None, k: int) -> list[Hit]:
        with self._lock:
            course = self._refresh(assistant_id, allowed, embedding_model)
            dense = course.dense
            vector = query_vector if dense is not None and query_vector is not None and \
                np.asarray(query_vector).size == dense.dim else None
            return hybrid_search(course.lexical, dense, query, vector, k, set(allowed))

    def _refresh(self, assistant_id: int, allowed: Allowed, model: str | None) -> _Course:
        course = self._courses.get(assistant_id)
        if course is None or course.model != model:  # another embedding model: its vectors are another space
            course = self._courses[assistant_id] = _Course()
            course.model = model
        for gone in [d for d in course.loaded if d not in allowed]:  # deleted or failed, possibly on another replica
            course.loaded.pop(gone)
            course.lexical.remove(gone)
            if course.dense is not None:
                course.dense.remove(gone)
        stale = [d for d, stamp in allowed.items() if course.loaded.get(d) != stamp]
        if stale:
            self._load(course, stale, allowed, model)
            for d in stale:
                self._course_of[d] = assistant_id
        return course

    def _load(self, course: _Course, stale: list[int], allowed: Allowed, model: str | None) -> None:
        with Session(self.engine) as s:
            rows = s.execute(select(DocumentChunk, AssistantDocument.name).join(
                AssistantDocument, AssistantDocument.id == DocumentChunk.document_id).where(
                DocumentChunk.document_id.in_(stale)).order_by(DocumentChunk.document_id, DocumentChunk.ordinal)).all()
        by_doc: dict[int, list[tuple[Chunk, bytes | None]]] = {d: [] for d in stale}
        for row, name in rows:
            vector = row.embedding if model is not None and row.embedding_model == model else None
            by_doc[row.document_id].append((chunk_of(row, name), vector))
        for doc_id, items in by_doc.items():
            course.lexical.remove(doc_id)
            if course.dense is not None:
                course.dense.remove(doc_id)
            course.lexical.add(c for c, _ in items)
            with_vectors = [(c, from_bytes(v)) for c, v in items if v]
            if with_vectors:
                if course.dense is None:
                    course.dense = DenseIndex(len(with_vectors[0][1]))
                fitting = [(c, v) for c, v in with_vectors if len(v) == course.dense.dim]
                if fitting:
                    course.dense.add([c for c, _ in fitting], np.vstack([v for _, v in fitting]))
            course.loaded[doc_id] = allowed[doc_id]
