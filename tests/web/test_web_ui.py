"""The web interface in a real Chromium against a real Flexi server (auth on, real model).

Issue 5's proof: sign in → accept terms → chat and see tokens stream → stop → reload and
find the conversation → language switch; teacher creates a course assistant, a student
of the course uses it, a student outside cannot; an admin pulls a model from a local HTTP
server and watches the progress; untrusted text renders as text; axe-core finds no
serious or critical violations on the main pages; the CSP is never violated.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import httpx
import numpy as np
import pytest

from tests.web.conftest import watched_pages

from flexi.access.passwords import hash_password
from tests.access_helpers import ServerDB
from tests.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

TERMS = "2026-11"
PASSWORD = "correct horse battery"
XSS_TERMS = '<img src=x onerror="window.__xss=1">'
TERMS_TEXT = f"""# Nutzungsbedingungen / Terms of use

Flexi runs on the university's own servers. **No prompt leaves the campus.**

- Usage is recorded under a pseudonym for quotas and statistics.
- {XSS_TERMS} [click](javascript:window.__xss=2)
"""
SCREENSHOTS = os.environ.get("FLEXI_SCREENSHOTS")  # e.g. docs/screenshots: save the main pages there


@dataclass
class Campus:
    srv: RunningServer
    db: ServerDB
    users: dict[str, int] = field(default_factory=dict)
    course_id: int = 0


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    home = tmp_path_factory.mktemp("web") / "home"
    home.mkdir(parents=True)
    (home / "terms.md").write_text(TERMS_TEXT, encoding="utf-8")
    # one slot: a second chat must wait while the first streams, so the queue position can be watched
    srv = start_server(home, {"FLEXI_AUTH": "on", "FLEXI_TERMS_VERSION": TERMS, "FLEXI_DEFAULT_LOCALE": "de",
                              "FLEXI_NUM_PARALLEL": "1",
                              "FLEXI_PULL_ALLOW_HOSTS": "127.0.0.1"})  # the admin pull test's file server
    db = ServerDB(home)
    c = Campus(srv, db)
    hashed = hash_password(PASSWORD)
    for subject, role in (("anna", "student"), ("ben", "student"), ("otto", "student"), ("prof", "teacher"),
                          ("root", "admin"), ("erin", "student")):
        c.users[subject] = db.add_user(subject, role=role, password_hash=hashed, display_name=subject.title())
    for subject in ("ben", "otto", "prof", "root", "erin"):  # anna accepts in the browser
        db.accept_terms(c.users[subject], TERMS)
    db.set_quota("user", c.users["anna"], tokens_per_day=250_000)
    c.course_id = db.add_course("bio101", {c.users["prof"]: "teacher", c.users["ben"]: "student"})
    try:
        yield c
    finally:
        stop_server(srv)


@pytest.fixture()
def page_of(browser: Any, campus: Campus) -> Iterator[Any]:
    """Fresh pages watched for script errors, CSP violations and requests leaving the server (tests/web/conftest.py)."""
    with watched_pages(browser, campus.srv.url, "de-DE") as make:
        yield make


def sign_in(page: Any, campus: Campus, user: str) -> None:
    page.goto(campus.srv.url + "/")
    page.fill("#login-user", user)
    page.fill("#login-pass", PASSWORD)
    page.press("#login-pass", "Enter")


def signed_in_chat(page: Any, campus: Campus, user: str, max_tokens: int | None = None) -> None:
    """Sign in, wait for the chat, and cap answers through the advanced settings (short tests stay short)."""
    sign_in(page, campus, user)
    page.wait_for_selector("#prompt")
    if max_tokens is not None:
        page.click("details.advanced summary")
        page.fill("#max-tokens", str(max_tokens))
        page.dispatch_event("#max-tokens", "change")


def ask(page: Any, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


def axe(page: Any, source: str) -> list[dict[str, Any]]:
    """Run axe-core on the page; return serious and critical violations."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # served from the page's own origin by the browser itself, so the strict CSP (script-src 'self') allows it
        page.route("**/__axe__.js", lambda route: route.fulfill(body=source, content_type="text/javascript"))
        page.add_script_tag(url="/__axe__.js")
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def long_answers(route: Any) -> None:
    """Make the model answer at length (EOS ignored) so that streaming and stopping can be watched."""
    body = json.loads(route.request.post_data or "{}")
    body.setdefault("options", {}).update({"ignore_eos": True, "num_predict": 3000})
    route.continue_(post_data=json.dumps(body))


# --- chat --------------------------------------------------------------------------------------
def test_sign_in_terms_chat_stream_stop_reload_and_language(page_of: Any, campus: Campus, axe_source: str) -> None:
    page = page_of("de-DE")
    page.goto(campus.srv.url + "/")
    page.wait_for_selector("#login-user")
    assert page.locator("h1").inner_text() == "Willkommen bei Flexi"
    assert axe(page, axe_source) == []
    shot(page, "sign-in")
    sign_in(page, campus, "anna")
    page.wait_for_selector("text=Nutzungsbedingungen und Datenschutz")
    terms = page.locator(".terms-text")
    assert XSS_TERMS in terms.inner_text()  # admin-entered text renders as text
    assert terms.locator("img").count() == 0 and terms.locator("a[href^='javascript']").count() == 0
    assert axe(page, axe_source) == []
    shot(page, "terms")
    # nothing works before the terms are accepted: the API refuses the browser's session
    assert page.evaluate("() => fetch('/api/tags').then(r => r.status)") == 403
    page.click("text=Ich stimme zu")
    page.wait_for_selector("#prompt")

    page.wait_for_selector(".quota:has-text('Heute noch 250.000 von 250.000 Tokens')")  # German number format
    page.route("**/api/chat", long_answers)
    page.fill("#prompt", "Erzähl eine lange Geschichte über eine Bibliothek.")
    page.press("#prompt", "Enter")
    stop = page.locator("button:has-text('Stopp')")
    stop.wait_for(state="visible")
    answer = page.locator("article.msg.assistant .body").last
    grown = "n => ([...document.querySelectorAll('article.msg.assistant .body')].at(-1)?.innerText.length ?? 0) > n"
    page.wait_for_function(grown, arg=20)
    first = len(answer.inner_text())
    page.wait_for_function(grown, arg=first + 20)
    assert stop.is_visible()  # still streaming: the text grew while the answer was running
    assert axe(page, axe_source) == []

    # meanwhile a second student asks: the one slot is busy, so the page says where they wait
    other = page_of("de-DE")
    signed_in_chat(other, campus, "ben", max_tokens=8)
    ask(other, "Hallo")
    other.wait_for_selector(".status-line:has-text('In der Warteschlange: Position 1')")
    assert other.locator("article.msg.assistant .body").last.inner_text() == ""
    stop.click()
    other.wait_for_selector("article.msg.assistant .meta:has-text('Tokens/s')", timeout=60_000)  # its turn came
    page.wait_for_selector("article.msg.assistant .meta:has-text('Angehalten.')")
    assert page.locator("button:has-text('Senden')").is_visible()
    page.wait_for_function("() => /Heute noch [0-9.]+ von 250\\.000/.test(document.querySelector('.quota').innerText)"
                           " && !document.querySelector('.quota').innerText.includes('250.000 von')")  # spent tokens show
    stopped_text = answer.inner_text()
    time.sleep(0.5)
    assert answer.inner_text() == stopped_text  # nothing arrives after stop
    shot(page, "chat")

    # the conversation is in this browser's storage: reload and find it in the list
    page.unroute("**/api/chat")
    page.reload()
    link = page.locator(".sidebar li a", has_text="Erzähl eine lange Geschichte")
    link.wait_for()
    link.click()
    page.wait_for_selector("article.msg.user:has-text('Erzähl eine lange Geschichte')")
    assert page.locator("article.msg.assistant .body").last.inner_text()[:40] == stopped_text[:40]

    # language switch: the page, remembered in the browser and in the account
    page.select_option("#lang-switch", "en")
    page.wait_for_selector("a.button:has-text('New chat')")
    assert page.evaluate("() => document.documentElement.lang") == "en"
    assert page.locator("nav a[data-route='chat']").inner_text() == "Chat"
    assert page.locator("#prompt").get_attribute("placeholder").startswith("Write a message")
    page.reload()
    page.wait_for_selector("a.button:has-text('New chat')")
    me = page.evaluate("() => fetch('/me').then(r => r.json())")
    assert me["locale"] == "en"
    page.select_option("#lang-switch", "de")
    page.wait_for_selector("a.button:has-text('Neuer Chat')")


def test_leaving_a_streaming_answer_stops_it_and_the_next_chat_starts(page_of: Any, campus: Campus) -> None:
    page = page_of("en-GB")
    signed_in_chat(page, campus, "erin", max_tokens=8)  # the left answer is made long below
    page.route("**/api/chat", long_answers)
    ask(page, "Tell a very long story about a lighthouse.")
    grown = "n => ([...document.querySelectorAll('article.msg.assistant .body')].at(-1)?.innerText.length ?? 0) > n"
    page.wait_for_function(grown, arg=20)
    page.unroute("**/api/chat")
    page.click("a.button:has-text('New chat')")  # while the answer streams
    page.wait_for_selector("#outlet[data-ready='/'] #prompt")
    assert page.locator("button:has-text('Send')").is_visible()
    ask(page, "Hello")
    page.wait_for_selector("article.msg.user:has-text('Hello')")  # the page did not think it was still busy
    page.wait_for_selector("article.msg.assistant .meta:has-text('tokens/s')", timeout=60_000)
    link = page.locator(".sidebar li a", has_text="Tell a very long story")
    link.click()
    page.wait_for_selector("article.msg.user:has-text('Tell a very long story')")
    assert len(page.locator("article.msg.assistant .body").last.inner_text()) > 20  # what arrived was kept


def test_api_docs_page_works_offline_under_the_csp(page_of: Any, campus: Campus) -> None:
    page = page_of("en-GB")
    sign_in(page, campus, "root")
    page.wait_for_selector("#prompt")
    page.goto(campus.srv.url + "/docs")
    page.wait_for_selector(".opblock-summary-path[data-path='/api/chat']", timeout=30_000)
    assert page.locator(".opblock").count() > 20  # page_of fails the test on any CSP violation or foreign request


def test_a_short_answer_with_regenerate_edit_rename_and_delete(page_of: Any, campus: Campus) -> None:
    page = page_of("en-GB")
    signed_in_chat(page, campus, "otto", max_tokens=16)
    ask(page, "Say hello")
    page.wait_for_selector("article.msg.assistant .meta:has-text('tokens/s')", timeout=60_000)
    assert int(page.locator("article.msg.assistant .meta").inner_text().split()[0]) <= 16  # the setting reached the model
    page.click("button:has-text('Regenerate')")
    page.wait_for_selector("article.msg.assistant .meta:has-text('tokens/s')", timeout=60_000)
    assert page.locator("article.msg").count() == 2  # regenerate replaced the answer
    page.click("article.msg.user button:has-text('Edit')")
    page.fill("article.msg.user textarea", "Say goodbye")
    page.click("button:has-text('Send again')")
    page.wait_for_selector("article.msg.user:has-text('Say goodbye')")
    page.wait_for_selector("article.msg.assistant .meta:has-text('tokens/s')", timeout=60_000)
    assert page.locator("article.msg").count() == 2
    page.once("dialog", lambda d: d.accept("Farewell test"))
    page.click(".sidebar li button:has-text('Rename')")
    page.wait_for_selector(".sidebar li a:has-text('Farewell test')")
    page.once("dialog", lambda d: d.accept())
    page.click(".sidebar li button:has-text('Delete')")
    page.wait_for_selector("text=No conversations yet.")


def test_model_output_and_stored_text_render_as_text(page_of: Any, campus: Campus) -> None:
    page = page_of("en-GB")
    sign_in(page, campus, "otto")
    page.wait_for_selector("#prompt")
    payloads = ["<img src=x onerror=\"window.__xss='img'\">", "<script>window.__xss='script'</script>",
                "[link](javascript:window.__xss='link')", "![tracker](http://tracker.example/pixel.png)",
                "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>", "<svg onload=\"window.__xss='svg'\"></svg>",
                "<a href=\"javascript:window.__xss='a'\">a</a>", "```html\n<script>window.__xss='code'</script>\n```",
                "<span class=\"visually-hidden error\">borrowed classes</span>"]
    conversation = {"id": "xss1", "title": "payloads", "model": "smollm2:135m", "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                    "messages": [{"role": "user", "content": p} for p in payloads[:2]]
                    + [{"role": "assistant", "content": "\n\n".join(payloads)}]}
    page.evaluate("c => localStorage.setItem('flexi.conversations.otto', JSON.stringify([c]))", conversation)
    page.goto(campus.srv.url + "/#/c/xss1")
    page.wait_for_selector("article.msg.assistant")
    body = page.locator("article.msg.assistant .body")
    assert body.locator("img, script, iframe, svg, object, embed").count() == 0
    assert body.locator("a[href^='javascript']").count() == 0
    assert body.locator(".visually-hidden, .error").count() == 0  # no borrowing of the page's classes
    assert "image not loaded: tracker" in body.inner_text()
    assert "<script>window.__xss='code'</script>" in body.locator("pre code").inner_text()  # code shows as code
    assert page.locator("article.msg.user").first.inner_text().count("<img src=x") == 1
    # real model output: a JSON schema forces the model to emit an HTML payload
    forced_payload = "<img src=x onerror=window.__xss=1>"  # no quotes: llama-cpp-python's schema converter mis-escapes them
    schema = {"type": "object", "properties": {"x": {"type": "string", "enum": [forced_payload]}}, "required": ["x"]}

    def forced(route: Any) -> None:
        data = json.loads(route.request.post_data or "{}")
        data["format"] = schema
        route.continue_(post_data=json.dumps(data))

    page.route("**/api/chat", forced)
    page.click("a.button:has-text('New chat')")
    page.wait_for_selector("#outlet[data-ready='/'] #prompt")
    page.fill("#prompt", "Answer in JSON")
    page.press("#prompt", "Enter")
    page.wait_for_selector("article.msg.assistant .meta:has-text('tokens/s')", timeout=60_000)
    answer = page.locator("article.msg.assistant .body").last
    assert forced_payload in answer.inner_text() and answer.locator("img").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__xss") is None


def test_my_data_keys_export_and_erasure(page_of: Any, campus: Campus, axe_source: str) -> None:
    page = page_of("en-GB")
    sign_in(page, campus, "erin")
    page.wait_for_selector("#prompt")
    page.click("nav a:has-text('My data')")
    page.wait_for_selector("#key-name")
    page.fill("#key-name", "my script")
    page.click("button:has-text('Create key')")
    key = page.locator(".card[role=status] code").inner_text()
    assert key and httpx.get(campus.srv.url + "/api/tags", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    page.wait_for_selector("td:has-text('my script')")
    assert axe(page, axe_source) == []
    shot(page, "my-data")
    with page.expect_download() as download:
        page.click("button:has-text('Download my data')")
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert exported["profile"]["subject"] == "erin"
    page.once("dialog", lambda d: d.accept())
    page.click("button:has-text('Delete my account')")
    page.wait_for_selector("#login-user")  # signed out: the account is gone
    assert httpx.get(campus.srv.url + "/api/tags", headers={"Authorization": f"Bearer {key}"}).status_code == 401


# --- course assistants ---------------------------------------------------------------------------
def test_teacher_creates_an_assistant_students_of_the_course_use_it_others_cannot(page_of: Any, campus: Campus,
                                                                                  axe_source: str) -> None:
    teacher = page_of("de-DE")
    sign_in(teacher, campus, "prof")
    teacher.wait_for_selector("#prompt")
    teacher.click("nav a:has-text('Assistenten')")
    teacher.click("a:has-text('Neuer Assistent')")
    teacher.wait_for_selector("#as-name")
    description = 'Hilft bei Fragen zur Zellbiologie. <img src=x onerror="window.__xss=1"> **fett**'
    teacher.fill("#as-name", "Zellbio-Tutor")
    teacher.fill("#as-description", description)
    teacher.fill("#as-system", "Antworte immer kurz.")
    teacher.fill("#as-welcome", "Hallo! Frag mich etwas über Zellen.")
    teacher.fill("#as-examples", "Was ist eine Zelle?\nWas macht ein Ribosom?")
    teacher.fill("#as-temperature", "0.2")
    teacher.fill("#as-max-tokens", "24")
    assert axe(teacher, axe_source) == []
    shot(teacher, "assistant-editor")
    teacher.click("button:has-text('Speichern')")
    card = teacher.locator(".card", has_text="Zellbio-Tutor")
    card.wait_for()
    slug = card.locator("a:has-text('Öffnen')").get_attribute("href").split("/")[-1]

    student = page_of("de-DE")
    sign_in(student, campus, "ben")
    student.wait_for_selector(".sidebar a:has-text('Zellbio-Tutor')")  # in the list and on the start page:
    student.wait_for_selector(".card h3 a:has-text('Zellbio-Tutor')")
    student.click(".sidebar a:has-text('Zellbio-Tutor')")
    student.wait_for_selector("text=Hallo! Frag mich etwas über Zellen.")
    assert student.locator("[data-testid=assistant-description]").inner_text() == description  # as text
    assert student.locator("text=Antworte immer kurz.").count() == 0  # system prompt hidden
    student.click(".examples button:has-text('Was ist eine Zelle?')")
    student.wait_for_selector("article.msg.assistant .meta:has-text('Tokens/s')", timeout=60_000)
    assert len(student.locator("article.msg.assistant .body").last.inner_text()) > 0
    assert axe(student, axe_source) == []
    shot(student, "assistant-chat")
    assert student.evaluate("() => window.__xss") is None

    outsider = page_of("de-DE")
    sign_in(outsider, campus, "otto")
    outsider.wait_for_selector("#prompt")
    assert outsider.locator(".sidebar a:has-text('Zellbio-Tutor')").count() == 0
    outsider.goto(campus.srv.url + f"/#/a/{slug}")
    outsider.wait_for_selector("h1:has-text('Nicht gefunden')")
    status = outsider.evaluate("s => fetch('/assistants/' + s).then(r => r.status)", slug)
    assert status == 404

    # the teacher sees counts and tokens, no texts
    teacher.goto(campus.srv.url + "/#/assistants")
    teacher.locator(".card", has_text="Zellbio-Tutor").locator("button:has-text('Nutzung')").click()
    teacher.wait_for_selector("text=1 verschiedene Personen")

    # opened for the whole university: an outsider uses it by link, and the conversation reopened
    # from the list still goes to the assistant (it is not among the outsider's courses' assistants)
    changed = teacher.evaluate("""async (slug) => {
        const me = await (await fetch('/me')).json();
        const r = await fetch('/assistants/' + slug, {method: 'PATCH', body: JSON.stringify({audience: 'campus'}),
            headers: {'Content-Type': 'application/json', 'X-Flexi-CSRF': me.csrf_token}});
        return r.status; }""", slug)
    assert changed == 200
    outsider.reload()  # the same link that was "not found" a moment ago
    outsider.click(".examples button:has-text('Was macht ein Ribosom?')")
    outsider.wait_for_selector("article.msg.assistant .meta:has-text('Tokens/s')", timeout=60_000)
    outsider.reload()
    outsider.click(".sidebar li a:has-text('Was macht ein Ribosom?')")
    outsider.wait_for_selector("article.msg.user:has-text('Was macht ein Ribosom?')")
    assert outsider.locator("article.msg.assistant .who").first.inner_text().startswith("Zellbio-Tutor")
    with outsider.expect_request(lambda r: r.method == "POST" and "/chat" in r.url) as sent:
        ask(outsider, "Und ein Mitochondrium?")
    assert sent.value.url.endswith(f"/assistants/{slug}/chat")  # still the assistant, billed to its course
    outsider.wait_for_selector("article.msg.assistant .meta:has-text('Tokens/s')", timeout=60_000)  # the new answer
    assert outsider.locator("article.msg.assistant").count() == 2


# --- administration ------------------------------------------------------------------------------
class _SlowFile(http.server.BaseHTTPRequestHandler):
    data = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        step = 256 * 1024
        for i in range(0, len(self.data), step):  # slow enough to watch the progress bar move
            self.wfile.write(self.data[i:i + step])
            time.sleep(0.05)

    def log_message(self, *args: Any) -> None:
        pass


def _gguf_bytes(tmp: Path) -> bytes:
    path = tmp / "lab-model.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(512)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tensor("tok_embd.weight", np.random.default_rng(5).random((6144, 256), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def test_admin_pulls_a_model_and_watches_progress_then_sees_usage(page_of: Any, campus: Campus, axe_source: str,
                                                                   tmp_path: Path) -> None:
    _SlowFile.data = _gguf_bytes(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowFile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/lab-model.gguf"
    try:
        page = page_of("de-DE")
        sign_in(page, campus, "root")
        page.wait_for_selector("#prompt")
        page.click("nav a:has-text('Verwaltung')")
        page.wait_for_selector("table")
        assert axe(page, axe_source) == []
        shot(page, "admin-users")
        page.click("a:has-text('Modelle')")
        page.wait_for_selector("#pull-name")
        page.fill("#pull-name", url)
        page.click("button:has-text('Herunterladen')")
        # watch the bar between empty and full
        page.wait_for_function("() => { const p = document.querySelector('#pull-progress');"
                               " return p.value > 0 && p.value < p.max; }")
        assert "%" in page.locator("#pull-status").inner_text()
        page.wait_for_selector("#pull-status:has-text('Fertig')", timeout=60_000)
        page.wait_for_selector("td:has-text('lab-model')")
        lab = page.locator("tr", has_text="lab-model")
        lab.get_by_role("button", name="Laden", exact=True).click()  # a weightless test model: loading fails clearly
        page.wait_for_selector("p.error[role=alert]:not(:empty)", timeout=60_000)
        assert "could not be loaded" in page.locator("p.error[role=alert]").first.inner_text()
        smol = page.locator("tr", has_text="smollm2:135m")
        assert "SmolLM2 · Apache-2.0 · Offenheit" in smol.inner_text()  # its catalogue family (flexi.catalog)
        if smol.get_by_role("button", name="Entladen", exact=True).count():  # earlier tests left it loaded
            smol.get_by_role("button", name="Entladen", exact=True).click()
            page.wait_for_selector("tr:has-text('smollm2:135m') td:has-text('nicht geladen')", timeout=60_000)
        page.locator("tr", has_text="smollm2:135m").get_by_role("button", name="Laden", exact=True).click()
        page.wait_for_selector("tr:has-text('smollm2:135m') td:has-text('geladen,')", timeout=60_000)  # with its memory
        page.locator("tr", has_text="smollm2:135m").get_by_role("button", name="Entladen", exact=True).click()
        page.wait_for_selector("tr:has-text('smollm2:135m') td:has-text('nicht geladen')", timeout=60_000)
        assert axe(page, axe_source) == []
        shot(page, "admin-models")
        page.click("a:has-text('Kontingente')")
        page.wait_for_selector("#quota-role")
        page.click("a:has-text('Nutzung')")
        page.wait_for_selector(".charts img")
        page.wait_for_function("() => [...document.querySelectorAll('.charts img')].every(i => i.complete && i.naturalWidth > 0)")
        assert axe(page, axe_source) == []
        shot(page, "admin-usage")
    finally:
        server.shutdown()
    tags = httpx.get(campus.srv.url + "/api/tags", headers={"Authorization": "Bearer none"})
    assert tags.status_code == 401  # the API still needs credentials


# --- conversations on the server (FLEXI_CHAT_HISTORY=server) --------------------------------------------
@pytest.fixture(scope="module")
def history_campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    home = tmp_path_factory.mktemp("webhistory") / "home"
    srv = start_server(home, {"FLEXI_AUTH": "on", "FLEXI_CHAT_HISTORY": "server", "FLEXI_CHAT_RETENTION_DAYS": "7"})
    c = Campus(srv, ServerDB(home))
    c.users["hanna"] = c.db.add_user("hanna", password_hash=hash_password(PASSWORD))
    try:
        yield c
    finally:
        stop_server(srv)


def test_server_side_history_follows_the_user_to_another_browser(browser: Any, history_campus: Campus) -> None:
    first = browser.new_context(locale="en-GB")
    second = browser.new_context(locale="en-GB")
    try:
        page = first.new_page()
        signed_in_chat(page, history_campus, "hanna", max_tokens=8)
        page.wait_for_selector("text=Conversations are kept on the server for 7 days.")
        ask(page, "Name a colour")
        page.wait_for_selector("article.msg.assistant .meta:has-text('tokens/s')", timeout=60_000)
        answer = page.locator("article.msg.assistant .body").last.inner_text()
        assert page.evaluate("() => Object.keys(localStorage).filter(k => k.startsWith('flexi.conversations'))") == []

        other = second.new_page()  # another device: nothing in its storage
        sign_in(other, history_campus, "hanna")
        other.locator(".sidebar li a", has_text="Name a colour").click()
        other.wait_for_selector("article.msg.user:has-text('Name a colour')")
        assert other.locator("article.msg.assistant .body").last.inner_text() == answer
        exported = other.evaluate("() => fetch('/me/export').then(r => r.json())")
        titles = [c["title"] for c in exported.get("conversations", [])]
        assert titles == ["Name a colour"]
    finally:
        first.close()
        second.close()


# --- single sign-on from the page ------------------------------------------------------------------------
from tests.campus.test_auth_login import Sso, sso  # noqa: E402,F401 - the OIDC provider fixture (pyop over HTTPS)


def test_single_sign_on_button_signs_in_through_the_provider(browser: Any, sso: Sso) -> None:
    sso.to_idp("POST", sso.idp + "/_test/next", json={
        "claims": {"sub": "web-sso-1", "name": "Dr. Web", "realm_access": {"roles": ["faculty"]}}, "misbehave": None,
    }).raise_for_status()
    context = browser.new_context(locale="de-DE", ignore_https_errors=True)  # the test provider's certificate is self-signed
    try:
        page = context.new_page()
        page.goto(sso.flexi.url + "/#/assistants")
        page.click("a:has-text('Mit dem Hochschulkonto anmelden')")
        page.wait_for_selector("#outlet[data-ready='/assistants'] h1:has-text('Kurs-Assistenten')")  # back where we were
        assert page.locator("header").inner_text().count("Dr. Web") == 1
        assert page.evaluate("() => fetch('/me').then(r => r.json()).then(m => m.role)") == "teacher"  # mapped claim
    finally:
        context.close()


def test_keyboard_only_sign_in_chat_and_stop(page_of: Any, campus: Campus) -> None:
    page = page_of("en-GB")
    page.goto(campus.srv.url + "/")
    page.wait_for_selector("#login-user:focus")  # focus starts in the first field
    page.keyboard.type("otto")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#prompt:focus")  # and lands in the message box after sign-in
    page.route("**/api/chat", long_answers)
    page.keyboard.type("Tell me a long story")
    page.keyboard.press("Enter")
    page.wait_for_selector("button:has-text('Stop'):focus")  # focus moves to Stop while the answer streams
    page.wait_for_function("() => ([...document.querySelectorAll('article.msg.assistant .body')].at(-1)?.innerText.length ?? 0) > 5")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.msg.assistant .meta:has-text('Stopped.')")
    page.wait_for_selector("#prompt:focus")  # back in the message box
    # from the top of the page, the first Tab reaches the (then visible) skip link, which leads to the content
    address = page.url
    page.reload()
    page.wait_for_selector("#prompt:focus")
    first = page.evaluate("() => document.querySelector('a[href], button, input, select, textarea, [tabindex]').className")
    assert first == "skip-link"  # the first stop of the Tab order
    page.focus(".skip-link")
    skip = page.evaluate("() => [document.activeElement.className, getComputedStyle(document.activeElement).outlineStyle,"
                         " document.activeElement.getBoundingClientRect().left >= 0]")
    assert skip == ["skip-link", "solid", True]
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main" and page.url == address
