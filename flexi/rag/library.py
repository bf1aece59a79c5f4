"""An assistant's course documents: ingest (parse in the sandbox → chunk → store), list, delete, search.

The database holds the material (`assistant_documents`, `document_chunks`); the search indexes are
rebuilt from it per assistant on first use and dropped when its documents change, so several server
replicas stay correct without sharing memory. Ingestion runs in the background, at most
`MAX_PARSES` at a time (each parse is a process of up to FLEXI_RAG_PARSE_MEMORY_MIB). Search is
hybrid: BM25 over every chunk and, when an embedding model is configured (`Embedder`), cosine similarity
over the chunk vectors computed at ingest (in batches, through Flexi's own engine) and stored with the
chunk rows; the two rankings are fused (RRF) by the `ChunkIndex` — in memory by default, or PostgreSQL.
A failed or missing embedding model never loses a document: it is then searched by its words only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from flexi.db.engine import session_factory
from flexi.db.models import AssistantDocument, DocumentChunk, iso_z, utcnow
from flexi.rag.chunking import Chunk, chunk_document
from flexi.rag.document import ParseError
from flexi.rag.embedding import Embedder, embed_batches, to_bytes
from flexi.rag.fusion import Hit
from flexi.rag.index import Allowed, ChunkIndex, MemoryChunkIndex, chunk_of
from flexi.rag.loaders.sniff import base_name
from flexi.rag.sandbox import ParseLimits, parse_document

log = logging.getLogger("flexi.rag")
MAX_PARSES = 2
MAX_FILES_PER_UPLOAD = 10  # one upload request; each file is bounded by FLEXI_RAG_MAX_UPLOAD_BYTES
INGEST_USER = "flexi:documents"  # the fair queue's name for ingestion: it gets a share, never the whole engine
WORDS_ONLY = "embedding failed, so this document is searched by its words only; upload it again to retry"


@dataclass(frozen=True)
class SearchResult:
    document_id: int
    document: str
    page: int | None
    heading: str
    text: str
    score: float


def document_view(d: AssistantDocument, progress: float | None = None) -> dict[str, Any]:
    view = {"id": d.id, "name": d.name, "status": d.status, "pages": d.pages, "chunks": d.chunks,
            "error": d.error, "size": d.size, "source_url": d.source_url, "created_at": iso_z(d.created_at),
            "updated_at": iso_z(d.updated_at)}
    if progress is not None and d.status == "processing":
        view["progress"] = round(progress, 3)  # share of chunks embedded so far (this replica's ingestions)
    return view


class DocumentLibrary:
    def __init__(self, engine: Engine, limits: ParseLimits, *, embedder: Embedder | None = None,
                 index: ChunkIndex | None = None, min_similarity: float = 0.0, top_k: int = 5) -> None:
        self.engine = engine
        self.writes = session_factory(engine)  # BEGIN IMMEDIATE on SQLite: a read-then-write never fails half-way
        self.limits = limits
        self.embedder = embedder
        self.index: ChunkIndex = index if index is not None else MemoryChunkIndex(engine)
        self.min_similarity = min_similarity
        self.top_k = top_k  # passages quoted into a course assistant's prompt
        self._progress: dict[int, float] = {}
        self._parses = asyncio.Semaphore(MAX_PARSES)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- ingest ---------------------------------------------------------------------------------
    async def add(self, assistant_id: int, name: str, data: bytes, uploaded_by: int | None,
                  source_url: str | None = None, media_type: str = "") -> dict[str, Any]:
        """Record the document as queued (a changed file with the same name replaces the old one's chunks)
        and process it in the background; returns its view."""
        label = base_name(name)
        digest = hashlib.sha256(data).hexdigest()

        def record() -> tuple[AssistantDocument, bool]:
            with self.writes() as s:
                doc = s.scalar(select(AssistantDocument).where(AssistantDocument.assistant_id == assistant_id,
                                                               AssistantDocument.name == label))
                if doc is not None and doc.sha256 == digest and doc.status in ("queued", "processing", "ready"):
                    return doc, False  # the same bytes again: nothing to do
                if doc is None:
                    doc = AssistantDocument(assistant_id=assistant_id, name=label)
                    s.add(doc)
                doc.sha256, doc.size, doc.status, doc.error = digest, len(data), "queued", None
                doc.uploaded_by, doc.source_url, doc.media_type, doc.updated_at = uploaded_by, source_url, media_type, utcnow()
                s.commit()
                s.refresh(doc)
                return doc, True

        doc, changed = await asyncio.to_thread(record)
        if changed:
            task = asyncio.create_task(self._process(assistant_id, doc.id, label, data), name=f"flexi-ingest-{doc.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return document_view(doc)

    async def _process(self, assistant_id: int, doc_id: int, name: str, data: bytes) -> None:
        async with self._parses:
            await asyncio.to_thread(self._set, doc_id, status="processing")
            try:
                parsed = await asyncio.to_thread(parse_document, data, name, self.limits)
                chunks = chunk_document(parsed, doc_id, name)
            except ParseError as exc:
                await asyncio.to_thread(self._set, doc_id, status="failed", error=exc.message("en"), chunks=0)
                return
            except Exception:
                log.exception("ingesting document %s failed", doc_id)
                await asyncio.to_thread(self._set, doc_id, status="failed", error="the document could not be processed")
                return
        vectors, model = await self._embed(doc_id, chunks)  # outside the parse slot: parsing and embedding overlap
        await asyncio.to_thread(self._store, doc_id, chunks, parsed.page_count or 0, vectors, model)

    async def _embed(self, doc_id: int, chunks: list[Chunk]) -> tuple[np.ndarray | None, str | None]:
        """The chunks' vectors and the embedding model; (None, None) without a model, (None, model) when it failed."""
        model = self.embedder.model if self.embedder is not None else None
        if self.embedder is None or model is None or not chunks:
            return None, None
        self._progress[doc_id] = 0.0
        try:
            vectors = await embed_batches(self.embedder, [c.search_text for c in chunks], user=INGEST_USER,
                                          progress=lambda done, total: self._progress.__setitem__(doc_id, done / total))
            return vectors, model
        except Exception:
            log.exception("embedding document %s with %s failed; it is searched by its words only", doc_id, model)
            return None, model
        finally:
            self._progress.pop(doc_id, None)

    def _set(self, doc_id: int, **values: Any) -> None:
        with self.writes() as s:
            s.execute(update(AssistantDocument).where(AssistantDocument.id == doc_id).values(updated_at=utcnow(), **values))
            s.commit()

    def _store(self, doc_id: int, chunks: list[Chunk], pages: int, vectors: np.ndarray | None, model: str | None) -> None:
        with self.writes() as s:
            if s.get(AssistantDocument, doc_id) is None:
                return  # deleted while it was processed
            s.execute(delete(DocumentChunk).where(DocumentChunk.document_id == doc_id))
            s.add_all([DocumentChunk(document_id=doc_id, ordinal=c.ordinal, page=c.page, heading=c.heading, text=c.text,
                                     embedding=to_bytes(vectors[i]) if vectors is not None else None,
                                     embedding_model=model if vectors is not None else None)
                       for i, c in enumerate(chunks)])
            s.flush()
            self.index.stored(s, doc_id)
            words_only = model is not None and vectors is None and bool(chunks)  # the model failed on this document
            s.execute(update(AssistantDocument).where(AssistantDocument.id == doc_id).values(
                status="ready", error=WORDS_ONLY if words_only else None, pages=pages, chunks=len(chunks),
                updated_at=utcnow()))
            s.commit()

    # --- re-embedding ---------------------------------------------------------------------------------
    async def reembed(self, assistant_id: int) -> list[dict[str, Any]]:
        """Embed again, in the background, the ready documents whose chunks lack vectors of the current
        embedding model (after an operator switched models, or an embedding failure); returns their views."""
        model = self.embedder.model if self.embedder is not None else None
        if model is None:
            return []

        def stale() -> list[AssistantDocument]:
            with Session(self.engine) as s:
                outdated = select(DocumentChunk.document_id).where(
                    (DocumentChunk.embedding_model.is_(None)) | (DocumentChunk.embedding_model != model))
                return list(s.scalars(select(AssistantDocument).where(
                    AssistantDocument.assistant_id == assistant_id, AssistantDocument.status == "ready",
                    AssistantDocument.id.in_(outdated)).order_by(AssistantDocument.name)))

        docs = await asyncio.to_thread(stale)
        for doc in docs:
            task = asyncio.create_task(self._reembed(doc.id), name=f"flexi-reembed-{doc.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return [document_view(d) for d in docs]

    async def _reembed(self, doc_id: int) -> None:
        def load() -> list[Chunk]:
            with Session(self.engine) as s:
                rows = s.execute(select(DocumentChunk, AssistantDocument.name).join(
                    AssistantDocument, AssistantDocument.id == DocumentChunk.document_id).where(
                    DocumentChunk.document_id == doc_id).order_by(DocumentChunk.ordinal)).all()
                return [chunk_of(row, name) for row, name in rows]

        chunks = await asyncio.to_thread(load)
        vectors, model = await self._embed(doc_id, chunks)
        if vectors is None:
            return  # the embedding model failed again: the document stays searchable by its words

        def save() -> None:
            with self.writes() as s:
                for chunk, vector in zip(chunks, vectors):
                    s.execute(update(DocumentChunk).where(DocumentChunk.document_id == doc_id,
                                                          DocumentChunk.ordinal == chunk.ordinal)
                              .values(embedding=to_bytes(vector), embedding_model=model))
                s.flush()
                self.index.stored(s, doc_id)
                s.execute(update(AssistantDocument).where(AssistantDocument.id == doc_id)
                          .values(error=None, updated_at=utcnow()))  # the new stamp makes every replica reload it
                s.commit()

        await asyncio.to_thread(save)

    async def idle(self) -> None:
        """Wait until every ingestion started so far has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- read and delete --------------------------------------------------------------------------
    def list(self, assistant_id: int) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            docs = s.scalars(select(AssistantDocument).where(AssistantDocument.assistant_id == assistant_id)
                             .order_by(AssistantDocument.name))
            return [document_view(d, self._progress.get(d.id)) for d in docs]

    def delete(self, assistant_id: int, doc_id: int) -> bool:
        """Delete one of this assistant's documents with its chunks; False if it is not one of them."""
        with self.writes() as s:
            gone = s.execute(delete(AssistantDocument).where(AssistantDocument.id == doc_id,
                                                             AssistantDocument.assistant_id == assistant_id)).rowcount
            s.commit()
        self.index.forget(doc_id)
        return bool(gone)

    def page(self, assistant_id: int, doc_id: int, page: int) -> dict[str, Any] | None:
        """The text of one page as its chunks hold it (what a citation link opens), or None."""
        with Session(self.engine) as s:
            doc = s.scalar(select(AssistantDocument).where(AssistantDocument.id == doc_id,
                                                           AssistantDocument.assistant_id == assistant_id))
            if doc is None:
                return None
            rows = s.execute(select(DocumentChunk.heading, DocumentChunk.text).where(
                DocumentChunk.document_id == doc_id, DocumentChunk.page == page).order_by(DocumentChunk.ordinal)).all()
            if not rows:
                return None
            return {"document_id": doc.id, "document": doc.name, "page": page,
                    "passages": [{"heading": h, "text": t} for h, t in rows]}

    def has_documents(self, assistant_id: int) -> bool:
        """Whether the assistant has any ready document (only then does its chat retrieve)."""
        with Session(self.engine) as s:
            return s.scalar(select(AssistantDocument.id).where(AssistantDocument.assistant_id == assistant_id,
                                                               AssistantDocument.status == "ready").limit(1)) is not None

    # --- search -----------------------------------------------------------------------------------
    async def search(self, assistant_id: int, query: str, k: int, *, user: str = "anonymous") -> list[SearchResult]:
        """The best `k` passages of this assistant's ready documents for `query` (never another's), without
        those too far from it: a passage counts when it shares a word with the query or its similarity
        reaches `min_similarity` — so a question the material does not cover finds nothing."""
        allowed = await asyncio.to_thread(self.allowed, assistant_id)
        if not allowed or not query.strip():
            return []
        model = self.embedder.model if self.embedder is not None else None
        vector = None
        if self.embedder is not None and model is not None:
            try:
                vector = np.asarray(await self.embedder.embed([query], user=user, purpose="query"), np.float32)[0]
            except Exception:
                log.warning("embedding a query with %s failed; searching by words only", model, exc_info=True)
        hits = await asyncio.to_thread(self.index.search, assistant_id, allowed, query, vector, model, k)
        return [SearchResult(int(h.chunk.document_id), h.chunk.document, h.chunk.page, h.chunk.heading, h.chunk.text,
                             round(h.score, 4)) for h in hits if self._relevant(h)]

    def _relevant(self, hit: Hit) -> bool:
        return hit.lexical_rank is not None or (hit.dense_score is not None and hit.dense_score >= self.min_similarity)

    def allowed(self, assistant_id: int) -> Allowed:
        """The assistant's ready documents with their last change (read every time: cheap, always current)."""
        with Session(self.engine) as s:
            rows = s.execute(select(AssistantDocument.id, AssistantDocument.updated_at).where(
                AssistantDocument.assistant_id == assistant_id, AssistantDocument.status == "ready"))
            return {doc_id: stamp for doc_id, stamp in rows}


__all__ = ["DocumentLibrary", "Hit", "SearchResult", "document_view"]
