"""Course documents and citations in a real Chromium against a real Flexi server (issue 13's proof, browser part).

A teacher creates an assistant, uploads a real PDF (file picker) and a Markdown file (drag and drop), sees
them become ready (and a broken and an oversized file fail with a clear error), asks in the chat, and
follows the answer's source to the cited page; the conversation reopened from the history still shows its
sources; a student of the course sees no upload controls and is refused by the server. axe-core finds no
serious or critical violations on the documents section, the answer with sources and the passage dialog.

The chat model is tiny (smollm2:135m): it writes a citation [n] only when asked plainly. The teacher's
instructions ask for citations and the question asks for the passage number; temperature 0 makes the run
repeatable. The server lists only the [n] the model really wrote (flexi/rag/grounding.py), so if the model
writes none this test fails: nothing here invents a citation.

With FLEXI_DOC_IMAGES=docs/images the test saves the README's two screenshots there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import watched_pages

from flexi.access.passwords import hash_password
from tests.access_helpers import ServerDB
from tests.conftest import RunningServer, start_server, stop_server
from tests.rag.pdf_maker import make_pdf
from tests.web.test_web_ui import PASSWORD, axe, sign_in

pytestmark = pytest.mark.e2e

IMAGES = os.environ.get("FLEXI_DOC_IMAGES")  # e.g. docs/images
MAX_UPLOAD = 200_000  # bytes per file on this server: the oversized upload below fails clearly
PDF_PAGES = [
    ["Optics - lecture script", "1 Light", "Light travels in straight lines through a uniform medium.",
     "Its speed in vacuum is about 300,000 km per second."],
    ["2 Refraction", "When light enters another medium it changes direction.",
     "The refractive index of water is 1.33; that of glass is about 1.5.", "Snell's law relates the two angles."],
    ["3 Lenses", "A convex lens focuses parallel light in its focal point.", "A concave lens spreads it."],
]
MARKDOWN = ("# Mechanics\n\nNewton's second law: the force equals mass times acceleration.\n\n"
            "## Units\n\nForce is measured in newton (N), mass in kilogram.\n")
INSTRUCTIONS = "Cite passages as [n]."
QUESTION = "Which passage gives the refractive index of water? Answer with its number in square brackets."


class Campus:
    def __init__(self, srv: RunningServer, db: ServerDB) -> None:
        self.srv, self.db = srv, db
        self.users: dict[str, int] = {}
        self.course_id = 0


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    """Its own server: the question below is this server's first chat, so the model sees the same prompt
    cache every run (a tiny model's answer can differ with what was computed before it)."""
    home = tmp_path_factory.mktemp("webdocs") / "home"
    srv = start_server(home, {"FLEXI_AUTH": "on", "FLEXI_RAG_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)})
    c = Campus(srv, ServerDB(home))
    hashed = hash_password(PASSWORD)
    for subject, role in (("prof", "teacher"), ("ben", "student")):
        c.users[subject] = c.db.add_user(subject, role=role, password_hash=hashed, display_name=subject.title())
    c.course_id = c.db.add_course("optics", {c.users["prof"]: "teacher", c.users["ben"]: "student"})
    try:
        yield c
    finally:
        stop_server(srv)


@pytest.fixture()
def page_of(browser: Any, campus: Campus) -> Iterator[Any]:
    """Fresh pages watched for script errors, CSP violations and requests leaving the server (tests/web/conftest.py)."""
    with watched_pages(browser, campus.srv.url, "en-GB") as make:
        yield make


def image(page: Any, name: str) -> None:
    if IMAGES:
        Path(IMAGES).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(IMAGES) / f"{name}.png"))


def drop_file(page: Any, selector: str, name: str, text: str, media_type: str) -> None:
    """Drop a file onto an element the way a file dragged from the desktop arrives."""
    transfer = page.evaluate_handle("""([name, text, type]) => {
        const dt = new DataTransfer(); dt.items.add(new File([text], name, {type})); return dt; }""",
                                    [name, text, media_type])
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_teacher_uploads_documents_asks_and_opens_the_cited_page(page_of: Any, campus: Campus, axe_source: str) -> None:
    teacher = page_of("en-GB")
    sign_in(teacher, campus, "prof")
    teacher.wait_for_selector("#prompt")
    teacher.click("nav a:has-text('Assistants')")
    teacher.click("a:has-text('New assistant')")
    teacher.wait_for_selector("#as-name")
    assert teacher.locator("#doc-files").count() == 0  # documents come after the first save
    teacher.fill("#as-name", "Optics tutor")
    teacher.fill("#as-description", "Answers from the optics and mechanics scripts, with sources.")
    teacher.fill("#as-system", INSTRUCTIONS)
    teacher.fill("#as-temperature", "0")
    teacher.fill("#as-max-tokens", "60")
    teacher.click("button:has-text('Save')")
    card = teacher.locator(".card", has_text="Optics tutor")
    card.locator("a:has-text('Edit')").click()
    teacher.wait_for_selector("#doc-files")
    slug = teacher.url.split("/")[-1]

    # a PDF through the file picker, together with a file that is not a PDF at all and one over the limit
    pdf = make_pdf(PDF_PAGES, title="Optics - lecture script")
    teacher.set_input_files("#doc-files", files=[
        {"name": "optics-script.pdf", "mimeType": "application/pdf", "buffer": pdf},
        {"name": "broken.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 this is not a real PDF"},
        {"name": "huge-notes.txt", "mimeType": "text/plain", "buffer": b"notes " * (MAX_UPLOAD // 5)},
    ])
    teacher.wait_for_selector("[role=status]:has-text('Received 3')")
    drop_file(teacher, ".dropzone", "mechanics.md", MARKDOWN, "text/markdown")  # and one by drag and drop
    rows = teacher.locator("[data-testid=documents-list] tbody tr")
    teacher.wait_for_function("() => document.querySelectorAll('[data-testid=documents-list] tbody tr').length === 4"
                              " && ![...document.querySelectorAll('[data-testid=documents-list] tbody tr')]"
                              ".some(r => ['queued', 'processing'].includes(r.dataset.status))", timeout=60_000)
    pdf_row = rows.filter(has_text="optics-script.pdf")
    assert pdf_row.get_attribute("data-status") == "ready"
    assert [c.inner_text() for c in pdf_row.locator("td").all()][:3] == ["ready", "3", "3"]  # status, pages, passages
    assert rows.filter(has_text="mechanics.md").get_attribute("data-status") == "ready"
    for name, why in (("broken.pdf", "failed: "), ("huge-notes.txt", "too large")):
        row = rows.filter(has_text=name)
        assert row.get_attribute("data-status") == "failed"
        assert why in row.locator("td").first.inner_text()  # the server's reason, on that document
    teacher.once("dialog", lambda d: d.accept())
    teacher.get_by_role("button", name="Delete document broken.pdf").click()
    teacher.wait_for_selector("[role=status]:has-text('“broken.pdf” deleted.')")
    teacher.wait_for_function("() => !document.querySelector('[data-testid=documents-list]').innerText.includes('broken.pdf')")
    assert "2 of 3 documents ready." in teacher.locator("[data-testid=documents-list]").inner_text()
    assert axe(teacher, axe_source) == []
    teacher.evaluate("() => document.getElementById('docs-heading').scrollIntoView()")
    image(teacher, "assistant-documents")

    # the chat: the answer's source is the PDF's page 2
    teacher.goto(f"{campus.srv.url}/#/a/{slug}")
    teacher.wait_for_selector("#prompt")
    teacher.fill("#prompt", QUESTION)
    teacher.press("#prompt", "Enter")
    teacher.wait_for_selector("article.msg.assistant .meta:has-text('tokens/s')", timeout=120_000)
    answer = teacher.locator("article.msg.assistant").last
    sources = answer.locator("section.sources li button")
    assert sources.count() >= 1, f"the model cited nothing: {answer.locator('.body').inner_text()!r}"
    assert sources.first.inner_text() == "optics-script.pdf, page 2"
    marker = answer.locator(".body button.cite").first  # the [n] in the text opens the same source
    assert marker.get_attribute("aria-label").endswith("optics-script.pdf, page 2")
    assert axe(teacher, axe_source) == []
    image(teacher, "answer-citations")

    sources.first.click()
    dialog = teacher.locator("dialog.passage-dialog[open]")
    dialog.wait_for()
    assert dialog.get_attribute("aria-labelledby") and dialog.locator("h2").inner_text() == "optics-script.pdf, page 2"
    teacher.wait_for_selector("dialog.passage-dialog .passage.cited mark")
    assert "The refractive index of water is 1.33" in dialog.locator(".passage.cited mark").inner_text()
    assert "Lenses" not in dialog.inner_text()  # page 2 only
    assert teacher.evaluate("() => Boolean(document.activeElement.closest('dialog[open]'))")  # focus is in the dialog
    teacher.keyboard.press("Tab")
    teacher.keyboard.press("Tab")
    assert teacher.evaluate("() => Boolean(document.activeElement.closest('dialog[open]'))")  # and stays there
    assert axe(teacher, axe_source) == []
    teacher.keyboard.press("Escape")
    teacher.wait_for_selector("dialog.passage-dialog", state="detached")
    assert teacher.evaluate("() => document.activeElement.closest('section.sources') !== null")  # back where it was

    marker.click()
    teacher.wait_for_selector("dialog.passage-dialog[open] .passage.cited mark")
    teacher.click("dialog.passage-dialog button:has-text('Close')")
    teacher.wait_for_selector("dialog.passage-dialog", state="detached")

    # reopened from the history (kept in this browser), the answer still has its sources
    teacher.reload()
    teacher.locator(".sidebar li a", has_text="Which passage gives").click()
    teacher.wait_for_selector("article.msg.assistant section.sources li button:has-text('optics-script.pdf, page 2')")

    # a student of the course: no upload controls, and the server refuses an upload
    student = page_of("de-DE")
    sign_in(student, campus, "ben")
    student.wait_for_selector("#prompt")
    student.goto(f"{campus.srv.url}/#/a/{slug}")
    student.wait_for_selector(f"#outlet[data-ready='/a/{slug}'] #prompt")
    assert student.locator("#doc-files, #doc-url, .dropzone").count() == 0
    student.goto(f"{campus.srv.url}/#/assistants/{slug}")
    student.wait_for_selector(f"#outlet[data-ready='/assistants/{slug}'] #as-name")
    assert student.locator("#doc-files, #doc-url, .dropzone, .documents").count() == 0
    refused = student.evaluate("""async (slug) => {
        const me = await (await fetch('/me')).json();
        const form = new FormData(); form.append('file', new Blob(['x']), 'x.txt');
        const r = await fetch(`/assistants/${slug}/documents`, {method: 'POST', body: form, headers: {'X-Flexi-CSRF': me.csrf_token}});
        const { explainUploadError } = await import('/ui/assets/documents.js');
        const error = (await r.json()).error;
        return [r.status, explainUploadError({status: r.status, message: typeof error === 'string' ? error : error.message})]; }""",
                               slug)
    assert refused[0] == 403
    assert refused[1].startswith("Nur Lehrende des Kurses und die Administration dürfen die Dokumente ändern.")


def test_stored_sources_render_as_text_and_only_cited_markers_become_links(page_of: Any, campus: Campus) -> None:
    """Citations kept in the browser's history are shown like model output: as text, whatever the names
    hold; a [n] in code or without a citation stays text; a passage without a page opens without a fetch."""
    page = page_of("de-DE")
    sign_in(page, campus, "prof")
    page.wait_for_selector("#prompt")
    made = page.evaluate("""async (course) => {
        const me = await (await fetch('/me')).json();
        const r = await fetch('/assistants', {method: 'POST', headers: {'Content-Type': 'application/json',
            'X-Flexi-CSRF': me.csrf_token}, body: JSON.stringify({course_id: course, name: 'Quellen', model: 'smollm2:135m'})});
        return r.json(); }""", campus.course_id)
    evil = '<img src=x onerror="window.__xss=1">.pdf'
    conversation = {
        "id": "cite1", "title": "sources", "model": "smollm2:135m", "assistant_id": made["id"], "assistant_slug": made["slug"],
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "messages": [{"role": "user", "content": "Frage"},
                     {"role": "assistant", "content": "Erstens [1], zweitens [2], nie [9]; im Code `[1]` bleibt Text.",
                      "citations": [{"n": 1, "document_id": 999, "document": evil, "page": 4, "text": "gone"},
                                    {"n": 2, "document_id": 998, "document": "notes.md", "page": None,
                                     "text": "Newton's second law <b>bold</b>"}]}],
    }
    page.evaluate("c => localStorage.setItem('flexi.conversations.prof', JSON.stringify([c]))", conversation)
    page.goto(campus.srv.url + "/#/c/cite1")
    answer = page.locator("article.msg.assistant")
    answer.wait_for()
    assert answer.locator(".body button.cite").all_inner_texts() == ["[1]", "[2]"]  # [9] names no source; code stays code
    assert answer.locator(".body code").inner_text() == "[1]"
    assert "nie [9]" in answer.locator(".body").inner_text()
    assert answer.locator("section.sources li button").all_inner_texts() == [f"{evil}, Seite 4", "notes.md"]
    assert answer.locator("img").count() == 0
    answer.locator(".body button.cite").nth(1).click()  # no page: the cited text itself, nothing fetched
    dialog = page.locator("dialog.passage-dialog[open]")
    assert dialog.locator("mark").inner_text() == "Newton's second law <b>bold</b>"
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog.passage-dialog", state="detached")
    answer.locator("section.sources li button").first.click()  # a document deleted since: the server's 404, and the quote
    page.wait_for_selector("dialog.passage-dialog [role=alert]:has-text('nicht gefunden')")
    assert page.locator("dialog.passage-dialog mark").inner_text() == "gone"
    page.keyboard.press("Escape")
    assert page.evaluate("() => window.__xss") is None
