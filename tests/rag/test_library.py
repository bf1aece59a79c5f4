"""The document library on a real database (SQLite and PostgreSQL) with a stand-in embedder: vectors are
stored with the chunk rows, search fuses words and vectors, and a failing or changed embedding model never
loses a document. The real embedding model runs in tests/campus/test_documents.py."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from flexi.db.models import Assistant, AssistantDocument, Course, DocumentChunk
from flexi.rag.embedding import embed_batches, from_bytes
from flexi.rag.library import WORDS_ONLY, DocumentLibrary
from flexi.rag.sandbox import ParseLimits

DIM = 64
NOTES = (b"# Organisation\n\nThe written exam is on 12 February in the main hall.\n\n"
         b"# Content\n\nLinear regression fits a line through points by least squares.\n")


class WordVectors:
    """Embeds a text as the hashed set of its words (deterministic; texts sharing words are similar)."""

    def __init__(self, model: str | None = "words", fail: bool = False) -> None:
        self.model, self.fail, self.calls = model, fail, []  # type: ignore[var-annotated]

    async def embed(self, texts: Sequence[str], *, user: str, purpose: str) -> np.ndarray:
        self.calls.append((len(texts), user, purpose))
        if self.fail:
            raise RuntimeError("the runner crashed")
        out = np.zeros((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                out[i, hashlib.sha256(word.encode()).digest()[0] % DIM] += 1.0
        return out


def assistant(engine: Engine, name: str) -> int:
    with Session(engine) as s:
        course = Course(name=name)
        s.add(course)
        s.flush()
        a = Assistant(slug=name.ljust(20, "x"), course_id=course.id, name="Tutor", model="m")
        s.add(a)
        s.commit()
        return a.id


async def ingest(library: DocumentLibrary, assistant_id: int, name: str, data: bytes) -> dict:
    view = await library.add(assistant_id, name, data, None)
    await library.idle()
    return next(d for d in library.list(assistant_id) if d["id"] == view["id"])


async def test_chunks_are_stored_with_their_vectors_and_found_by_either_ranking(db: Engine) -> None:
    embedder = WordVectors()
    library = DocumentLibrary(db, ParseLimits(), embedder=embedder, min_similarity=0.3)
    aid = assistant(db, "course-a")
    doc = await ingest(library, aid, "notes.md", NOTES)
    assert doc["status"] == "ready" and doc["error"] is None and doc["chunks"] >= 1
    with Session(db) as s:
        rows = s.execute(select(DocumentChunk.embedding, DocumentChunk.embedding_model)
                         .where(DocumentChunk.document_id == doc["id"])).all()
    assert rows and all(m == "words" and from_bytes(v).shape == (DIM,) for v, m in rows)
    assert {(user, purpose) for _, user, purpose in embedder.calls} == {("flexi:documents", "passage")}
    hits = await library.search(aid, "When is the written exam?", 2, user="u1")
    assert hits and "12 February" in hits[0].text
    assert embedder.calls[-1] == (1, "u1", "query")
    assert await library.search(aid, "zzz qqq", 3) == []  # no shared word, too far: nothing relevant


async def test_a_failing_embedding_model_leaves_the_document_searchable_by_its_words(db: Engine) -> None:
    library = DocumentLibrary(db, ParseLimits(), embedder=WordVectors(fail=True))
    aid = assistant(db, "course-b")
    doc = await ingest(library, aid, "notes.md", NOTES)
    assert doc["status"] == "ready" and doc["error"] == WORDS_ONLY
    with Session(db) as s:
        assert set(s.scalars(select(DocumentChunk.embedding).where(DocumentChunk.document_id == doc["id"]))) == {None}
    hits = await library.search(aid, "regression least squares", 1)
    assert hits and "regression" in hits[0].text


async def test_vectors_of_another_model_are_never_compared(db: Engine) -> None:
    embedder = WordVectors()
    library = DocumentLibrary(db, ParseLimits(), embedder=embedder, min_similarity=-1.0)
    aid = assistant(db, "course-c")
    await ingest(library, aid, "notes.md", NOTES)
    assert await library.search(aid, "zzz", 1)  # with min_similarity -1 any vector counts
    embedder.model = "another-model"  # the operator switched models: the stored vectors are another space
    assert await library.search(aid, "zzz", 1) == []
    assert await library.search(aid, "regression", 1)  # words still work


async def test_search_never_returns_another_assistants_chunks(db: Engine) -> None:
    library = DocumentLibrary(db, ParseLimits(), embedder=WordVectors(), min_similarity=-1.0)
    mine, theirs = assistant(db, "course-d"), assistant(db, "course-e")
    await ingest(library, theirs, "secret.md", b"# Secret\n\nThe written exam answers are 42.\n")
    await ingest(library, mine, "notes.md", NOTES)
    for query in ("written exam answers 42", "Secret"):
        assert all(h.document == "notes.md" for h in await library.search(mine, query, 10))


async def test_a_document_deleted_while_processing_is_not_brought_back(db: Engine) -> None:
    library = DocumentLibrary(db, ParseLimits(), embedder=WordVectors())
    aid = assistant(db, "course-f")
    view = await library.add(aid, "notes.md", NOTES, None)
    assert library.delete(aid, view["id"])
    await library.idle()
    with Session(db) as s:
        assert s.get(AssistantDocument, view["id"]) is None
        assert s.scalars(select(DocumentChunk).where(DocumentChunk.document_id == view["id"])).all() == []


async def test_embedding_runs_in_batches_and_reports_progress() -> None:
    seen: list[tuple[int, int]] = []
    embedder = WordVectors()
    vectors = await embed_batches(embedder, [f"text {i}" for i in range(5)], user="u",
                                  progress=lambda d, t: seen.append((d, t)), batch=2)
    assert vectors.shape == (5, DIM) and seen == [(2, 5), (4, 5), (5, 5)]
    assert [n for n, _, _ in embedder.calls] == [2, 2, 1]


@pytest.mark.parametrize("model", [None])
async def test_without_an_embedding_model_nothing_is_embedded(db: Engine, model: None) -> None:
    embedder = WordVectors(model=model)
    library = DocumentLibrary(db, ParseLimits(), embedder=embedder)
    aid = assistant(db, "course-g")
    doc = await ingest(library, aid, "notes.md", NOTES)
    assert doc["status"] == "ready" and doc["error"] is None and embedder.calls == []
    assert await library.search(aid, "regression", 1)


async def test_after_a_model_switch_reembed_gives_the_documents_vectors_of_the_new_model(db: Engine) -> None:
    embedder = WordVectors()
    library = DocumentLibrary(db, ParseLimits(), embedder=embedder, min_similarity=-1.0)
    aid = assistant(db, "course-h")
    doc = await ingest(library, aid, "notes.md", NOTES)
    embedder.model = "words-v2"
    assert await library.search(aid, "zzz", 1) == []  # the old vectors are another model's: words only
    views = await library.reembed(aid)
    assert [v["id"] for v in views] == [doc["id"]]
    await library.idle()
    with Session(db) as s:
        assert set(s.scalars(select(DocumentChunk.embedding_model).where(DocumentChunk.document_id == doc["id"]))) == {"words-v2"}
    assert await library.search(aid, "zzz", 1)  # vectors of the current model again
    assert await library.reembed(aid) == []  # nothing left to do
