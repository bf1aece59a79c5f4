"""An assistant's course documents: ingest (parse in the sandbox → chunk → store), list, delete, search.

The database holds the material (`assistant_documents`, `document_chunks`); the search indexes are
rebuilt from it per assistant on first use and dropped when its documents change, so several server
replicas stay correct without sharing memory. Ingestion runs in the background, at most
`MAX_PARSES` at a time (each parse is a process of up to FLEXI_RAG_PARSE_MEMORY_MIB). Search is
lexical (BM25) until the embedding step stores vectors with the chunks; the index is the hybrid one,
so dense retrieval joins without a change here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from flexi.db.engine import session_factory
from flexi.db.models import AssistantDocument, DocumentChunk, iso_z, utcnow
from flexi.rag.chunking import HEADING_SEPARATOR, Chunk, chunk_document
from flexi.rag.document import ParseError
from flexi.rag.fusion import Hit
from flexi.rag.lexical import LexicalIndex
from flexi.rag.loaders.sniff import base_name
from flexi.rag.sandbox import ParseLimits, parse_document

log = logging.getLogger("flexi.rag")
MAX_PARSES = 2
MAX_FILES_PER_UPLOAD = 10  # one upload request; each file is bounded by FLEXI_RAG_MAX_UPLOAD_BYTES


@dataclass(frozen=True)
class SearchResult:
    document_id: int
    document: str
    page: int | None
    heading: str
    text: str
    score: float


def document_view(d: AssistantDocument, locale: str = "en") -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "status": d.status, "pages": d.pages, "chunks": d.chunks,
            "error": d.error, "size": d.size, "source_url": d.source_url, "created_at": iso_z(d.created_at),
            "updated_at": iso_z(d.updated_at)}


class DocumentLibrary:
    def __init__(self, engine: Engine, limits: ParseLimits) -> None:
        self.engine = engine
        self.writes = session_factory(engine)  # BEGIN IMMEDIATE on SQLite: a read-then-write never fails half-way
        self.limits = limits
        self._indexes: dict[int, LexicalIndex] = {}
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
                self._indexes.pop(assistant_id, None)
                return
            except Exception:
                log.exception("ingesting document %s failed", doc_id)
                await asyncio.to_thread(self._set, doc_id, status="failed", error="the document could not be processed")
                return
            await asyncio.to_thread(self._store, doc_id, chunks, parsed.page_count or 0)
            self._indexes.pop(assistant_id, None)

    def _set(self, doc_id: int, **values: Any) -> None:
        with self.writes() as s:
            s.execute(update(AssistantDocument).where(AssistantDocument.id == doc_id).values(updated_at=utcnow(), **values))
            s.commit()

    def _store(self, doc_id: int, chunks: list[Chunk], pages: int) -> None:
        with self.writes() as s:
            s.execute(delete(DocumentChunk).where(DocumentChunk.document_id == doc_id))
            s.add_all([DocumentChunk(document_id=doc_id, ordinal=c.ordinal, page=c.page, heading=c.heading, text=c.text)
                       for c in chunks])
            s.execute(update(AssistantDocument).where(AssistantDocument.id == doc_id).values(
                status="ready", error=None, pages=pages, chunks=len(chunks), updated_at=utcnow()))
            s.commit()

    async def idle(self) -> None:
        """Wait until every ingestion started so far has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- read and delete --------------------------------------------------------------------------
    def list(self, assistant_id: int) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            docs = s.scalars(select(AssistantDocument).where(AssistantDocument.assistant_id == assistant_id)
                             .order_by(AssistantDocument.name))
            return [document_view(d) for d in docs]

    def delete(self, assistant_id: int, doc_id: int) -> bool:
        """Delete one of this assistant's documents with its chunks; False if it is not one of them."""
        with self.writes() as s:
            gone = s.execute(delete(AssistantDocument).where(AssistantDocument.id == doc_id,
                                                             AssistantDocument.assistant_id == assistant_id)).rowcount
            s.commit()
        self._indexes.pop(assistant_id, None)
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
    def search(self, assistant_id: int, query: str, k: int) -> list[SearchResult]:
        """The best `k` passages of this assistant's ready documents for `query` (never another's)."""
        index, allowed = self._index(assistant_id)
        return [SearchResult(int(c.document_id), c.document, c.page, c.heading, c.text, round(score, 4))
                for c, score in index.search(query, k, allowed)]

    def _index(self, assistant_id: int) -> tuple[LexicalIndex, set[int]]:
        with Session(self.engine) as s:  # which documents count is read every time: cheap, and always current
            allowed = set(s.scalars(select(AssistantDocument.id).where(AssistantDocument.assistant_id == assistant_id,
                                                                      AssistantDocument.status == "ready")))
            index = self._indexes.get(assistant_id)
            if index is None or index.documents != allowed:
                rows = s.execute(select(DocumentChunk, AssistantDocument.name).join(
                    AssistantDocument, AssistantDocument.id == DocumentChunk.document_id).where(
                    DocumentChunk.document_id.in_(allowed)).order_by(DocumentChunk.document_id, DocumentChunk.ordinal)).all()
                chunks = [Chunk(row.document_id, name, row.page, tuple(h for h in row.heading.split(HEADING_SEPARATOR) if h),
                                row.text, row.ordinal) for row, name in rows]
                index = LexicalIndex.from_chunks(chunks)
                self._indexes[assistant_id] = index
        return index, allowed


__all__ = ["DocumentLibrary", "Hit", "SearchResult", "document_view"]
