"""The campus-scale index (flexi.rag.pgindex) on a real PostgreSQL with pgvector, started by the test session
from the `pgserver` wheel's binaries (tests/pg.py): the same ranking as the embedded HybridIndex, the rights
filter, embedding models kept apart, deletion by cascade, lexical-only search, German text; and the same
results on Debian's PostgreSQL without pgvector (dense ranking in Python)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session

from flexi.db.engine import make_engine, session_factory
from flexi.db.migrate import current_revision, downgrade, head_revision, upgrade
from flexi.db.models import Assistant, AssistantDocument, Base, Course, DocumentChunk, include_object
from flexi.rag.chunking import Chunk
from flexi.rag.fusion import HybridIndex
from flexi.rag.lexical import LexicalIndex
from flexi.rag.pgindex import PostgresChunkIndex, pgvector_available
from tests.pg import PostgresServer

# Reflecting the pgvector column (which no model maps, see flexi.db.models.SEARCH_ENGINE_OBJECTS) warns.
pytestmark = pytest.mark.filterwarnings("ignore:Did not recognize type 'vector':sqlalchemy.exc.SAWarning")

DIM = 16
MODEL = "all-minilm-l6-v2"

TOPICS = [
    ("Vorlesung", "Die Vorlesung findet montags im Hörsaal 3 statt. Prüfungen werden am Semesterende geschrieben."),
    ("Prüfungsordnung", "Die Prüfungsordnung regelt Wiederholungsprüfungen und die Anmeldung über das Portal."),
    ("Gradient descent", "Gradient descent updates the weights against the gradient of the loss function."),
    ("Backpropagation", "Backpropagation computes gradients layer by layer with the chain rule."),
    ("Overfitting", "Overfitting means the model memorises the training data; regularisation and dropout help."),
    ("Übungen", "Die Übungsblätter erscheinen dienstags; Abgabe über das Portal bis Freitag."),
    ("Linear regression", "Linear regression fits a line by least squares; the loss is the mean squared error."),
    ("Straße und Anfahrt", "Das Institut liegt in der Hauptstraße 12, erreichbar mit der Straßenbahn."),
]


@pytest.fixture(scope="module")
def pg_engine(pgvector_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    name = pgvector_server.create_database()
    engine = make_engine(pgvector_server.url(name), tmp_path_factory.mktemp("pgindex"))
    upgrade(engine)
    yield engine
    engine.dispose()
    pgvector_server.drop_database(name)


def _assistant(session: Session, slug: str) -> int:
    course = Course(name=f"course-{slug}")
    session.add(course)
    session.flush()
    assistant = Assistant(slug=slug, course_id=course.id, name=slug, model="m")
    session.add(assistant)
    session.flush()
    return assistant.id


def _store(engine: sa.Engine, index: PostgresChunkIndex | None, assistant_id: int, name: str,
           sections: list[tuple[str, str]], vectors: np.ndarray, model: str = MODEL) -> int:
    """A ready document with one chunk per section and the given embeddings, written the way the library does
    (rows flushed, then `stored` in the same transaction); `index=None` writes the rows only."""
    with session_factory(engine)() as session:
        doc = AssistantDocument(assistant_id=assistant_id, name=name, sha256="0" * 64, status="ready",
                                pages=len(sections), chunks=len(sections))
        session.add(doc)
        session.flush()
        for i, ((heading, text), vector) in enumerate(zip(sections, vectors, strict=True)):
            session.add(DocumentChunk(document_id=doc.id, ordinal=i, page=i + 1, heading=heading, text=text,
                                      embedding=np.asarray(vector, dtype="<f4").tobytes(), embedding_model=model))
        session.flush()
        if index is not None:
            index.stored(session, doc.id)
        session.commit()
        return doc.id


def _chunks(name: str, document_id: int, sections: list[tuple[str, str]]) -> list[Chunk]:
    return [Chunk(document_id, name, i + 1, (h,) if h else (), t, i) for i, (h, t) in enumerate(sections)]


def _keys(hits: list) -> list[tuple[int, int]]:  # type: ignore[type-arg]
    return [(h.chunk.document_id, h.chunk.ordinal) for h in hits]


@pytest.fixture(scope="module")
def corpus(pg_engine: sa.Engine) -> dict[str, object]:
    """One assistant with three documents (24 chunks, random unit-ish vectors), the in-memory index of the same
    chunks, and a second assistant whose document repeats the first one's text and vectors."""
    rng = np.random.default_rng(13)
    index = PostgresChunkIndex(pg_engine)
    with session_factory(pg_engine)() as session:
        a, b = _assistant(session, "course-a"), _assistant(session, "course-b")
        session.commit()
    chunks: list[Chunk] = []
    vectors = []
    docs = []
    for n, name in enumerate(["skript.pdf", "folien.pptx", "faq.md"]):
        sections = [(h, f"{t} ({name}, {n})") for h, t in TOPICS]
        vecs = rng.normal(size=(len(sections), DIM)).astype(np.float32)
        doc_id = _store(pg_engine, index, a, name, sections, vecs)
        docs.append(doc_id)
        chunks += _chunks(name, doc_id, sections)
        vectors.append(vecs)
    all_vectors = np.vstack(vectors)
    foreign = _store(pg_engine, index, b, "secret.pdf", [(h, t) for h, t in TOPICS], all_vectors[: len(TOPICS)])
    return {"index": index, "memory": HybridIndex.from_chunks(chunks, all_vectors), "chunks": chunks,
            "vectors": all_vectors, "a_docs": frozenset(docs), "b_doc": foreign, "a": a, "b": b, "rng": rng}


QUERIES = ["Wann findet die Vorlesung statt?", "gradient of the loss", "Prüfungen Anmeldung Portal",
           "dropout regularisation", "Straßenbahn Hauptstraße", "least squares error", "nichts passt hier"]


def test_the_migration_adds_the_search_columns_and_pgvector(pg_engine: sa.Engine) -> None:
    assert pgvector_available(pg_engine)
    with pg_engine.connect() as c:
        columns = {r[0]: r[1] for r in c.execute(sa.text(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = 'document_chunks'"))}
        assert columns["embedding_vec"] == "vector" and columns["search_terms"] == "tsvector"
        assert c.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_document_chunks_search_terms'")
                         ).scalar_one().endswith("USING gin (search_terms)")
        context = MigrationContext.configure(c, opts={"compare_type": True, "include_object": include_object})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_removes_the_columns_and_upgrade_restores_them(pgvector_server: PostgresServer, tmp_path: Path) -> None:
    name = pgvector_server.create_database()
    engine = make_engine(pgvector_server.url(name), tmp_path)
    try:
        upgrade(engine)
        downgrade(engine, "0005")
        names = {c["name"] for c in sa.inspect(engine).get_columns("document_chunks")}
        assert not names & {"embedding_vec", "search_terms", "search_length"}
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert {"embedding_vec", "search_terms", "search_length"} <= {c["name"] for c in sa.inspect(engine).get_columns("document_chunks")}
    finally:
        engine.dispose()
        pgvector_server.drop_database(name)


def test_the_migration_is_a_no_op_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'flexi.db'}", tmp_path)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert not {c["name"] for c in sa.inspect(engine).get_columns("document_chunks")} & {"embedding_vec", "search_terms"}
    assert not pgvector_available(engine)
    with pytest.raises(ValueError, match="PostgreSQL"):
        PostgresChunkIndex(engine)
    downgrade(engine, "0005")


@pytest.mark.parametrize("query", QUERIES)
def test_ranking_equals_the_in_memory_hybrid_index(corpus: dict, query: str) -> None:
    index, memory, rng = corpus["index"], corpus["memory"], np.random.default_rng(zlib.crc32(query.encode()))
    target = corpus["vectors"][rng.integers(len(corpus["chunks"]))]
    qvec = (target + rng.normal(scale=0.3, size=DIM)).astype(np.float32)
    for k in (1, 5, 30):
        expected = memory.hybrid_search(query, qvec, k, corpus["a_docs"])
        got = index.search(0, corpus["a_docs"], query, qvec, MODEL, k)
        assert _keys(got) == _keys(expected)
        for g, e in zip(got, expected, strict=True):
            assert g.chunk == e.chunk
            assert g.score == pytest.approx(e.score)
            assert (g.lexical_rank, g.dense_rank) == (e.lexical_rank, e.dense_rank)
            assert g.lexical_score == pytest.approx(e.lexical_score, rel=1e-4)
            assert g.dense_score == pytest.approx(e.dense_score, abs=1e-5)


def test_lexical_only_without_a_query_vector(corpus: dict) -> None:
    lexical = LexicalIndex.from_chunks(corpus["chunks"])
    for query in QUERIES:
        got = corpus["index"].search(0, corpus["a_docs"], query, None, MODEL, 10)
        assert all(h.dense_rank is None and h.dense_score is None for h in got)
        assert [(h.chunk.document_id, h.chunk.ordinal) for h in got] == \
               [(c.document_id, c.ordinal) for c, _ in lexical.search(query, 10, corpus["a_docs"])]
    assert corpus["index"].search(0, corpus["a_docs"], "dropout", np.ones(DIM, np.float32), None, 5)[0].dense_rank is None


def test_german_umlauts_inflections_and_case(corpus: dict) -> None:
    index, docs = corpus["index"], corpus["a_docs"]
    top = index.search(0, docs, "PRÜFUNGSORDNUNG", None, None, 3)
    assert top and all(h.chunk.heading == "Prüfungsordnung" for h in top)
    assert index.search(0, docs, "übungsblätter", None, None, 1)[0].chunk.heading == "Übungen"
    assert index.search(0, docs, "HAUPTSTRASSE", None, None, 1)[0].chunk.heading == "Straße und Anfahrt"  # ß case-folds to ss
    assert index.search(0, docs, "Vorlesungen", None, None, 1)[0].chunk.heading == "Vorlesung"  # the plural meets the singular


def test_another_documents_chunks_are_never_returned(corpus: dict) -> None:
    """Course B's document has the very text and vectors of course A's first document: a search over A's
    documents never returns it, whatever the query or vector, and a search over B's returns only B's."""
    index, b_doc = corpus["index"], corpus["b_doc"]
    for i, (heading, text) in enumerate(TOPICS):
        vector = corpus["vectors"][i]
        hits = index.search(0, corpus["a_docs"], f"{heading} {text} secret.pdf", vector, MODEL, 50)
        assert hits and b_doc not in {h.chunk.document_id for h in hits}
        only_b = index.search(0, frozenset({b_doc}), text, vector, MODEL, 50)
        assert only_b and {h.chunk.document_id for h in only_b} == {b_doc}
        assert only_b[0].chunk.document == "secret.pdf"
    assert index.search(0, frozenset({10**9}), "Vorlesung", corpus["vectors"][0], MODEL, 5) == []
    assert index.search(0, frozenset(), "Vorlesung", corpus["vectors"][0], MODEL, 5) == []


def test_rows_of_another_embedding_model_are_ignored_by_the_dense_part(pg_engine: sa.Engine, corpus: dict) -> None:
    index = corpus["index"]
    probe = np.random.default_rng(7).normal(size=DIM).astype(np.float32)
    other = _store(pg_engine, index, corpus["a"], "other-model.md", [("Anhang", "zzz qqq")], probe[None, :], model="bge-m3")
    try:
        docs = corpus["a_docs"] | {other}
        hits = index.search(0, docs, "Vorlesung", probe, MODEL, 50)
        assert other not in {h.chunk.document_id for h in hits}  # its vector is the query's, but of another model
        own = index.search(0, docs, "Vorlesung", probe, "bge-m3", 50)
        mine = [h for h in own if h.chunk.document_id == other]
        assert len(mine) == 1 and mine[0].dense_rank == 1 and mine[0].dense_score == pytest.approx(1.0, abs=1e-5)
        assert all(h.dense_rank is None for h in own if h.chunk.document_id != other)  # model A's rows: lexical only
        dims = index.search(0, docs, "Vorlesung", np.ones(DIM + 1, np.float32), MODEL, 5)  # a vector of another size
        assert all(h.dense_rank is None for h in dims)
    finally:
        with session_factory(pg_engine)() as session:
            session.execute(sa.delete(AssistantDocument).where(AssistantDocument.id == other))
            session.commit()


def test_deleting_a_document_removes_its_rows_and_they_are_never_found(pg_engine: sa.Engine, corpus: dict) -> None:
    index = corpus["index"]
    vector = np.random.default_rng(3).normal(size=DIM).astype(np.float32)
    doomed = _store(pg_engine, index, corpus["a"], "alt.pdf", [("Einmalig", "Quokka Zebrafisch Einhorn")], vector[None, :])
    docs = corpus["a_docs"] | {doomed}
    assert index.search(0, docs, "Quokka", vector, MODEL, 1)[0].chunk.document_id == doomed
    with session_factory(pg_engine)() as session:
        session.execute(sa.delete(AssistantDocument).where(AssistantDocument.id == doomed))
        session.commit()
    with pg_engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM document_chunks WHERE document_id = :d"), {"d": doomed}).scalar_one() == 0
    index.forget(corpus["a"])
    for query in ("Quokka", "Zebrafisch Einhorn", "Einmalig"):
        assert doomed not in {h.chunk.document_id for h in index.search(0, docs, query, vector, MODEL, 50)}


def test_rows_written_without_the_index_are_filled_when_it_starts(pg_engine: sa.Engine, corpus: dict) -> None:
    """Rows stored under FLEXI_RAG_INDEX=memory have no search columns yet; the index fills them on start."""
    vector = np.random.default_rng(5).normal(size=DIM).astype(np.float32)
    late = _store(pg_engine, None, corpus["a"], "late.md", [("Nachtrag", "Kängurus hüpfen")], vector[None, :])
    try:
        fresh = PostgresChunkIndex(pg_engine)
        hit = fresh.search(0, corpus["a_docs"] | {late}, "Kängurus", vector, MODEL, 1)[0]
        assert hit.chunk.document_id == late and hit.lexical_rank == 1 and hit.dense_rank == 1
        assert fresh.backfill() == 0
    finally:
        with session_factory(pg_engine)() as session:
            session.execute(sa.delete(AssistantDocument).where(AssistantDocument.id == late))
            session.commit()


def test_the_same_ranking_on_postgresql_without_pgvector(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """Debian's PostgreSQL has no pgvector: the migration leaves the vector column out and the index ranks the
    stored embeddings itself, with the same results as in memory."""
    name = postgres_server.create_database()
    engine = make_engine(postgres_server.url(name), tmp_path)
    try:
        upgrade(engine)
        if pgvector_available(engine):
            pytest.skip("this PostgreSQL has pgvector")
        index = PostgresChunkIndex(engine)
        assert not index.vectors
        rng = np.random.default_rng(11)
        with session_factory(engine)() as session:
            a = _assistant(session, "plain")
            session.commit()
        vecs = rng.normal(size=(len(TOPICS), DIM)).astype(np.float32)
        doc = _store(engine, index, a, "skript.pdf", TOPICS, vecs)
        memory = HybridIndex.from_chunks(_chunks("skript.pdf", doc, TOPICS), vecs)
        for query in QUERIES:
            qvec = vecs[rng.integers(len(TOPICS))] + rng.normal(scale=0.3, size=DIM).astype(np.float32)
            assert _keys(index.search(0, frozenset({doc}), query, qvec, MODEL, 5)) == \
                   _keys(memory.hybrid_search(query, qvec, 5, {doc}))
    finally:
        engine.dispose()
        postgres_server.drop_database(name)
