"""Course documents with the campus-scale index (FLEXI_RAG_INDEX=postgres) through the real server: a
PostgreSQL with pgvector started by the suite (the `pgserver` wheel's binaries) holds the chunks, their
vectors from the bundled embedding model and their search terms; retrieval, rights and deletion behave
as with the embedded index."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from tests.campus.test_documents import HANDBOOK, NOTES, Course, open_course
from tests.conftest import start_server, stop_server
from tests.pg import PostgresServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pg_course(tmp_path_factory: pytest.TempPathFactory, pgvector_server: PostgresServer) -> Iterator[tuple[Course, str]]:
    url = pgvector_server.url(pgvector_server.create_database())
    srv = start_server(tmp_path_factory.mktemp("documents-pg") / "home",
                       {"FLEXI_AUTH": "on", "FLEXI_DEFAULT_EMBEDDING_MODEL": "true", "FLEXI_DATABASE_URL": url,
                        "FLEXI_RAG_INDEX": "postgres"})
    course = open_course(srv, url)
    try:
        yield course, url
    finally:
        course.db.close()
        stop_server(srv)


def test_postgres_index_finds_by_meaning_keeps_courses_apart_and_forgets_deleted_documents(pg_course: tuple[Course, str]) -> None:
    course, url = pg_course
    r = course.call("POST", f"/assistants/{course.slug}/documents", "teacher",
                    files=[("file", ("handbook.md", HANDBOOK.encode(), "text/markdown")),
                           ("file", ("orga.md", NOTES.encode(), "text/markdown"))])
    assert r.status_code == 202, r.text
    course.call("POST", f"/assistants/{course.other_slug}/documents", "teacher-b",
                files=[("file", ("b.md", "# Geheim\n\nDie Klausur von Kurs B ist am 3. März.\n".encode(), "text/markdown"))])
    docs = {d["name"]: d for d in course.ready(course.slug, n=2)}
    course.ready(course.other_slug, who="teacher-b")
    assert {d["status"] for d in docs.values()} == {"ready"}
    engine = create_engine(url)
    with engine.connect() as c:  # the rows are the index: vectors and search terms filled at ingestion
        filled = c.execute(text("SELECT count(*), count(embedding_vec), count(search_terms) FROM document_chunks "
                                "WHERE document_id = :d"), {"d": docs["handbook.md"]["id"]}).one()
    assert filled[0] > 0 and filled[0] == filled[1] == filled[2]

    found = course.call("POST", f"/assistants/{course.slug}/search", "student",
                        json={"query": "On what day must I sit the exam, and where?", "k": 3}).json()["results"]
    assert found[0]["document"] == "handbook.md" and "12 February" in found[0]["text"]
    klausur = course.call("POST", f"/assistants/{course.slug}/search", "student",
                          json={"query": "Wann ist die Klausur?", "k": 5}).json()["results"]
    assert klausur[0]["document"] == "orga.md" and all(h["document"] != "b.md" for h in klausur)
    assert course.call("POST", f"/assistants/{course.slug}/search", "student",
                       json={"query": "How do volcanoes erupt?"}).json()["results"] == []

    answer = course.call("POST", f"/assistants/{course.slug}/chat", "student",
                         json={"messages": [{"role": "user", "content": "Wann ist die Klausur?"}], "stream": False})
    assert answer.status_code == 200 and isinstance(answer.json()["citations"], list)

    assert course.call("DELETE", f"/assistants/{course.slug}/documents/{docs['orga.md']['id']}", "teacher").status_code == 204
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM document_chunks WHERE document_id = :d"),
                         {"d": docs["orga.md"]["id"]}).scalar() == 0
    engine.dispose()
    after = course.call("POST", f"/assistants/{course.slug}/search", "student",
                        json={"query": "Wann ist die Klausur?", "k": 5}).json()["results"]
    assert all(h["document"] not in ("orga.md", "b.md") for h in after)
