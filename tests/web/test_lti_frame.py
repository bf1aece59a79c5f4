"""A course assistant launched over LTI 1.3 inside a platform's iframe, in Chromium.

The platform (lti1p3platform, tests/lti_platform.py) serves a course page on http://127.0.0.1 with the
activity in an iframe; Flexi runs on http://localhost — another site, so everything in the frame is a
third-party context, as Flexi inside Moodle is. The student clicks nothing but the activity: the login
initiation, the launch and the chat happen in the frame with the LTI cookies (SameSite=None; Secure;
Partitioned) and no second sign-in; Flexi's CSP names the platform in frame-ancestors. The screenshot
goes to docs/images/moodle-lti-launch.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.access_helpers import ServerDB
from tests.conftest import MODEL, free_port, start_server, stop_server
from tests.lti_platform import INSTRUCTOR, LEARNER, Browser, Platform, form_of, start_platform

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "moodle-lti-launch.png"

COURSE_PAGE = """<!doctype html><html lang="de"><head><meta charset="utf-8"><title>Statistik 1: KI-Tutor</title>
<style>body{{margin:0;font-family:sans-serif;background:#f5f5f5}}header{{background:#0f47ad;color:#fff;padding:12px 24px;
font-size:18px}}nav{{padding:8px 24px;color:#555;font-size:14px}}main{{padding:0 24px}}h2{{font-weight:500}}
iframe{{width:100%;height:640px;border:1px solid #ccc;background:#fff}}</style></head><body>
<header>Moodle · Universität</header><nav>Startseite / Meine Kurse / Statistik 1 / KI-Tutor</nav>
<main><h2>KI-Tutor (Externes Tool)</h2><iframe id="activity" title="KI-Tutor" src="{src}"
allow="clipboard-write"></iframe></main></body></html>"""


@pytest.fixture(scope="module")
def lti_campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Platform, str]]:
    port = free_port()
    tool = f"http://localhost:{port}"
    platform = start_platform(tool)
    srv = start_server(tmp_path_factory.mktemp("lti-web") / "home", {"FLEXI_AUTH": "on"}, port=port)
    db = ServerDB(srv.home)
    boss = db.add_user("lti-boss", role="admin", locale="de")
    admin = {"Authorization": f"Bearer {db.add_key(boss)[1]}"}
    try:
        r = httpx.post(tool + "/admin/lti/platforms", json=platform.admin_body(), headers=admin, timeout=30)
        assert r.status_code == 201, r.text
        slug = _teacher_places_an_assistant(tool, platform)
        yield tool, platform, slug
    finally:
        platform.stop()
        db.close()
        stop_server(srv)


def _teacher_places_an_assistant(tool: str, platform: Platform) -> str:
    """The teacher's deep linking (no browser needed): a new assistant, with a welcome text and short answers."""
    teacher = Browser()
    page = teacher.get(platform.start_url("t-1", [INSTRUCTOR], context="course-1", context_title="Statistik 1",
                                          link=None, deep_link=True, name="Tanja Teacher"))
    choice = teacher.submit(page)
    action, fields = form_of(choice.text)
    answer = teacher.request("POST", tool + action, data={
        "ticket": fields["ticket"], "new_name": "KI-Tutor Statistik", "new_model": MODEL,
        "new_prompt": "Du bist ein freundlicher Statistik-Tutor. Antworte kurz auf Deutsch."})
    assert teacher.submit(answer).json() == {"saved": 1}
    slug = platform.content_items[-1][0]["custom"]["assistant"]
    me = teacher.get(tool + "/me").json()
    r = teacher.client.patch(tool + f"/assistants/{slug}", headers={**teacher.cookie_header(tool),
                             "X-Flexi-CSRF": me["csrf_token"]}, json={
        "description": "Fragen zu Varianz, Mittelwert und Verteilungen",
        "welcome_message": "Hallo! Ich helfe dir bei Statistik 1.", "options": {"num_predict": 24, "temperature": 0}})
    assert r.status_code == 200, r.text
    return slug


def test_a_student_chats_with_the_course_assistant_inside_the_platform_frame(browser: Any, lti_campus: Any) -> None:
    tool, platform, slug = lti_campus
    platform.frame_html = COURSE_PAGE.format(src=escape(platform.start_url(
        "s-1", [LEARNER], context="course-1", link="link-1", custom={"assistant": slug}, name="Sam Student")))
    context = browser.new_context(locale="de-DE", viewport={"width": 1100, "height": 820})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(platform.url + "/frame")
        frame = page.frame_locator("#activity")
        frame.locator("#prompt").wait_for(timeout=60_000)  # landed in the chat: no sign-in form in between
        assert frame.locator("#login-user").count() == 0
        frame.locator("text=KI-Tutor Statistik").first.wait_for()
        frame.locator("#prompt").fill("Was ist die Varianz?")
        frame.locator("#prompt").press("Enter")
        frame.locator("article.msg.assistant .meta").last.wait_for(timeout=120_000)  # the answer is complete
        assert frame.locator("article.msg.assistant .body").last.inner_text().strip()
        inner = next(f for f in page.frames if f.url.startswith(tool))
        assert inner.url.startswith(f"{tool}/lti/app?platform=")  # now on the conversation's own address
        cookies = {c["name"]: c for c in context.cookies(tool)}
        session = cookies["flexi_lti_session"]
        assert session["sameSite"] == "None" and session["secure"] and session["httpOnly"]
        assert "flexi_session" not in cookies  # no first-party sign-in was needed
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        assert not problems, problems
    finally:
        context.close()


def test_the_shell_acts_as_the_launched_person_even_beside_a_first_party_session(browser: Any, lti_campus: Any) -> None:
    """Moodle and Flexi on one site send Flexi's first-party session cookie into the frame too: every call of
    the shell says X-Flexi-LTI, so the server uses the LTI session and the person is the launched student."""
    tool, platform, slug = lti_campus
    platform.frame_html = COURSE_PAGE.format(src=escape(platform.start_url(
        "s-2", [LEARNER], context="course-1", link="link-1", custom={"assistant": slug}, name="Sina Student")))
    context = browser.new_context(locale="de-DE")
    calls: list[dict[str, str]] = []  # a first-party cookie that is no session: used, it would mean 401
    try:
        context.add_cookies([{"name": "flexi_session", "value": "first-party-token", "domain": "localhost", "path": "/",
                              "httpOnly": True, "secure": True, "sameSite": "None"}])
        page = context.new_page()
        page.on("request", lambda r: calls.append(r.headers) if r.url.startswith(tool + "/me") else None)
        page.goto(platform.url + "/frame")
        frame = page.frame_locator("#activity")
        frame.locator("#prompt").wait_for(timeout=60_000)  # signed in: the (bogus) first-party cookie was not used
        assert frame.locator("#login-user").count() == 0
        assert calls and all(c.get("x-flexi-lti") == "1" for c in calls), calls
    finally:
        context.close()
