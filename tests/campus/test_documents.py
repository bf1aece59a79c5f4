"""Course documents through the real server (issue 13, first part): upload, list, page view, search,
delete, and who may do what. The server has the bundled embedding model, so retrieval is hybrid (BM25 + vectors)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, start_server, stop_server
from tests.rag.office_maker import make_docx, make_pptx

pytestmark = pytest.mark.e2e
NOTES = "# Organisatorisches\n\nDie Klausur findet am 12. Februar im Audimax statt.\n\n# Inhalt\n\nRegression.\n"


@dataclass
class Course:
    srv: RunningServer
    keys: dict[str, dict[str, str]]
    slug: str
    other_slug: str
    db: ServerDB

    def call(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.srv.url + path, headers=self.keys[who], timeout=60, **kw)

    def ready(self, slug: str, who: str = "teacher", n: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            docs = self.call("GET", f"/assistants/{slug}/documents", who).json()["documents"]
            if len(docs) >= n and all(d["status"] in ("ready", "failed") for d in docs):
                return docs
            time.sleep(0.2)
        raise AssertionError(f"documents of {slug} not processed in time: {docs}")


def open_course(srv: RunningServer, db_url: str | None = None) -> Course:
    """Users (a teacher and a student of course A, an outsider, the teacher of course B), their keys, and
    an assistant in each course, on a running server with authentication on."""
    db = ServerDB(srv.home, db_url)
    ids = {name: db.add_user(name, role=role) for name, role in (
        ("teacher", "teacher"), ("student", "student"), ("outsider", "student"), ("teacher-b", "teacher"))}
    course_a = db.add_course("stats-a", {ids["teacher"]: "teacher", ids["student"]: "student"})
    course_b = db.add_course("stats-b", {ids["teacher-b"]: "teacher"})
    keys = {name: {"Authorization": f"Bearer {db.add_key(uid)[1]}"} for name, uid in ids.items()}
    made = [httpx.post(srv.url + "/assistants", headers=keys[who], timeout=60,
                       json={"course_id": cid, "name": "Tutor", "model": MODEL,
                             "options": {"num_predict": 8, "temperature": 0}}).json()["slug"]
            for who, cid in (("teacher", course_a), ("teacher-b", course_b))]
    return Course(srv, keys, made[0], made[1], db)


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Course]:
    srv = start_server(tmp_path_factory.mktemp("documents") / "home", {"FLEXI_AUTH": "on", "FLEXI_DEFAULT_EMBEDDING_MODEL": "true"})
    c = open_course(srv)
    try:
        yield c
    finally:
        c.db.close()
        stop_server(srv)


def test_teacher_uploads_files_and_students_find_passages_with_pages(course: Course) -> None:
    files = [("file", ("skript.docx", make_docx(), "application/octet-stream")),
             ("file", ("folien.pptx", make_pptx(), "application/octet-stream")),
             ("file", ("orga.md", NOTES.encode(), "text/markdown"))]
    r = course.call("POST", f"/assistants/{course.slug}/documents", "teacher", files=files)
    assert r.status_code == 202, r.text
    assert [d["name"] for d in r.json()["documents"]] == ["skript.docx", "folien.pptx", "orga.md"]
    docs = course.ready(course.slug, n=3)
    assert {d["status"] for d in docs} == {"ready"} and all(d["chunks"] > 0 for d in docs)
    found = course.call("POST", f"/assistants/{course.slug}/search", "student", json={"query": "Varianz Streuung", "k": 3})
    assert found.status_code == 200, found.text
    best = found.json()["results"][0]
    assert best["document"] == "skript.docx" and best["page"] == 1 and "Varianz" in best["text"]
    page = course.call("GET", f"/assistants/{course.slug}/documents/{best['document_id']}/pages/1", "student")
    assert page.status_code == 200 and any("Varianz" in p["text"] for p in page.json()["passages"])
    klausur = course.call("POST", f"/assistants/{course.slug}/search", "student", json={"query": "Wann ist die Klausur?"})
    assert klausur.status_code == 200, klausur.text
    assert klausur.json()["results"][0]["document"] == "orga.md"


def test_the_assistant_answers_with_its_passages_in_the_prompt_and_citations_in_the_last_chunk(course: Course) -> None:
    """Retrieval in the chat: the passages reach the prompt (many more prompt tokens than the same question
    to the bare model) and the final chunk says what was cited, streamed or not, also as `assistant/<slug>`."""
    course.ready(course.slug, n=3)
    question = [{"role": "user", "content": "Was misst die Varianz?"}]
    answer = course.call("POST", f"/assistants/{course.slug}/chat", "student", json={"messages": question, "stream": False})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert isinstance(body["citations"], list)
    assert all(c["document"] in {"skript.docx", "folien.pptx", "orga.md"} for c in body["citations"])
    bare = course.call("POST", "/api/chat", "student", json={"model": MODEL, "messages": question, "stream": False,
                                                           "options": {"num_predict": 8}}).json()
    assert body["prompt_eval_count"] > bare["prompt_eval_count"] + 40
    with httpx.stream("POST", course.srv.url + "/api/chat", headers=course.keys["student"], timeout=60,
                      json={"model": f"assistant/{course.slug}", "messages": question}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True and isinstance(lines[-1]["citations"], list)
    assert all("citations" not in line for line in lines[:-1])
    import openai

    oa = openai.OpenAI(base_url=course.srv.url + "/v1", api_key=course.keys["student"]["Authorization"][7:])
    done = oa.chat.completions.create(model=f"assistant/{course.slug}", messages=question)  # type: ignore[arg-type]
    assert isinstance(done.choices[0].message.model_extra["citations"], list)  # type: ignore[index]
    assert done.usage is not None and done.usage.prompt_tokens > bare["prompt_eval_count"] + 40
    chunks = list(oa.chat.completions.create(model=f"assistant/{course.slug}", messages=question,  # type: ignore[arg-type]
                                             stream=True))
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert isinstance(last.choices[0].delta.model_extra["citations"], list)  # type: ignore[index]


def test_the_same_name_again_replaces_the_document(course: Course) -> None:
    changed = NOTES.replace("12. Februar", "19. Februar")
    r = course.call("POST", f"/assistants/{course.slug}/documents", "teacher",
                    files=[("file", ("orga.md", changed.encode(), "text/markdown"))])
    assert r.status_code == 202
    docs = course.ready(course.slug, n=3)
    assert [d["name"] for d in docs].count("orga.md") == 1
    text = " ".join(x["text"] for x in course.call("POST", f"/assistants/{course.slug}/search", "student",
                                                   json={"query": "Klausur Februar"}).json()["results"])
    assert "19. Februar" in text and "12. Februar" not in text


def test_a_student_may_not_upload_and_an_outsider_sees_nothing(course: Course) -> None:
    r = course.call("POST", f"/assistants/{course.slug}/documents", "student",
                    files=[("file", ("x.md", b"# x", "text/markdown"))])
    assert r.status_code == 403
    for method, path, kw in (("GET", "/documents", {}), ("POST", "/search", {"json": {"query": "Varianz"}})):
        assert course.call(method, f"/assistants/{course.slug}{path}", "outsider", **kw).status_code == 404


def test_another_courses_document_id_is_a_404(course: Course) -> None:
    r = course.call("POST", f"/assistants/{course.other_slug}/documents", "teacher-b",
                    files=[("file", ("b.md", b"# Geheim\n\nNur Kurs B.\n", "text/markdown"))])
    b_id = r.json()["documents"][0]["id"]
    course.ready(course.other_slug, who="teacher-b")
    assert course.call("GET", f"/assistants/{course.slug}/documents/{b_id}/pages/1", "student").status_code == 404
    assert course.call("DELETE", f"/assistants/{course.slug}/documents/{b_id}", "teacher").status_code == 404
    hits = course.call("POST", f"/assistants/{course.slug}/search", "student", json={"query": "Geheim Kurs B"}).json()
    assert all(h["document"] != "b.md" for h in hits["results"])


def test_a_broken_file_fails_alone_with_a_clear_error(course: Course) -> None:
    r = course.call("POST", f"/assistants/{course.slug}/documents", "teacher",
                    files=[("file", ("kaputt.pdf", b"%PDF-1.7\n" + b"\x00garbage" * 100, "application/pdf")),
                           ("file", ("../../app/main.py", b"print('hello')\n", "text/plain"))])
    assert r.status_code == 202
    docs = {d["name"]: d for d in course.ready(course.slug, n=5)}
    assert docs["kaputt.pdf"]["status"] == "failed" and docs["kaputt.pdf"]["error"]
    assert docs["main.py"]["status"] == "ready"  # the name is only a label


def test_deleting_a_document_removes_it_from_search(course: Course) -> None:
    docs = {d["name"]: d for d in course.ready(course.slug, n=5)}
    r = course.call("DELETE", f"/assistants/{course.slug}/documents/{docs['orga.md']['id']}", "teacher")
    assert r.status_code == 204
    hits = course.call("POST", f"/assistants/{course.slug}/search", "student", json={"query": "Klausur Februar"}).json()
    assert all(h["document"] != "orga.md" for h in hits["results"])


HANDBOOK = """# Course handbook

## Examination date

The written examination takes place on 12 February in the main lecture hall.

## Office hours

Professor Lang meets students on Tuesdays from two to four in her office.

## Grading

Homework counts for thirty percent of the grade.
"""


def test_chunks_carry_vectors_and_a_question_in_other_words_finds_its_passage(course: Course) -> None:
    """Dense retrieval through Flexi's own engine: every chunk row holds a 384-dimensional all-MiniLM vector,
    a question sharing no word with the passage still finds it, and one the material does not cover finds
    nothing (so the assistant says so instead of inventing)."""
    from sqlalchemy import select

    from flexi.db.models import DocumentChunk

    r = course.call("POST", f"/assistants/{course.slug}/documents", "teacher",
                    files=[("file", ("handbook.md", HANDBOOK.encode(), "text/markdown"))])
    doc_id = r.json()["documents"][0]["id"]
    docs = {d["name"]: d for d in course.ready(course.slug, n=4)}
    assert docs["handbook.md"]["status"] == "ready" and docs["handbook.md"]["error"] is None
    with course.db.session() as s:
        rows = s.execute(select(DocumentChunk.embedding, DocumentChunk.embedding_model)
                         .where(DocumentChunk.document_id == doc_id)).all()
    assert rows and all(len(v) == 384 * 4 and m == "all-minilm:l6-v2" for v, m in rows)
    found = course.call("POST", f"/assistants/{course.slug}/search", "student",
                        json={"query": "On what day must I sit the exam, and where?", "k": 3}).json()
    assert found["results"][0]["document"] == "handbook.md", found
    assert "12 February" in found["results"][0]["text"]
    nothing = course.call("POST", f"/assistants/{course.slug}/search", "student",
                          json={"query": "How do volcanoes erupt?", "k": 3}).json()
    assert nothing["results"] == []


OPTICS = [["Optics - lecture script", "1 Light", "Light travels in straight lines through a uniform medium."],
          ["2 Refraction", "When light enters another medium it changes direction.",
           "The refractive index of water is 1.33; that of glass is about 1.5."],
          ["3 Lenses", "A convex lens focuses parallel light in its focal point."]]
CITE_QUESTION = "Which passage gives the refractive index of water? Answer with its number in square brackets."


def _optics_assistant(course: Course) -> str:
    """A fresh assistant of course A with only the optics script (a real 3-page PDF) as its material."""
    from tests.rag.pdf_maker import make_pdf

    course_id = course.call("GET", f"/assistants/{course.slug}", "teacher").json()["course"]["id"]
    slug = course.call("POST", "/assistants", "teacher", json={
        "course_id": course_id, "name": "Optics", "model": MODEL, "system_prompt": "Cite passages as [n].",
        "options": {"num_predict": 24, "temperature": 0}}).json()["slug"]
    r = course.call("POST", f"/assistants/{slug}/documents", "teacher",
                    files=[("file", ("optics-script.pdf", make_pdf(OPTICS), "application/pdf"))])
    assert r.status_code == 202, r.text
    assert course.ready(slug)[0]["status"] == "ready"
    return slug


def test_deleting_the_assistant_deletes_its_documents_chunks_and_vectors_in_the_database_and_on_disk(course: Course) -> None:
    from sqlalchemy import func, select

    from flexi.db.models import AssistantDocument, DocumentChunk

    slug = _optics_assistant(course)
    doc_id = course.call("GET", f"/assistants/{slug}/documents", "teacher").json()["documents"][0]["id"]
    assert course.call("DELETE", f"/assistants/{slug}", "teacher").status_code == 204
    with course.db.session() as s:
        assert s.get(AssistantDocument, doc_id) is None
        assert s.scalar(select(func.count()).select_from(DocumentChunk).where(DocumentChunk.document_id == doc_id)) == 0
    marker = b"refractive index of water"  # nothing of the document is kept in files (the database aside)
    leftovers = [p for p in course.srv.home.rglob("*") if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm")
                 and p.stat().st_size < 50_000_000 and marker in p.read_bytes()]
    assert leftovers == []
