"""The web interface reached under a real host name, not 127.0.0.1 (issue 11, item 6).

Chromium resolves `flexi.test` to a server bound to 127.0.0.2 whose FLEXI_PUBLIC_URL is
http://flexi.test:PORT, and FLEXI_ORIGINS is empty. Every same-origin POST the page makes
(password sign-in, chat) carries `Origin: http://flexi.test:PORT`; before issue 11 the
guard refused them (and the Host check refused the page itself), which pushed operators to
FLEXI_ORIGINS=*. A page of another origin is still refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flexi.access.passwords import hash_password
from tests.access_helpers import ServerDB
from tests.web.conftest import CHROMIUM, LAUNCH_ARGS, _require
from tests.conftest import RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.e2e

HOST_NAME = "flexi.test"
EVIL_NAME = "evil.test"  # another site, resolved to the same server: a page there is cross-origin
BIND = "127.0.0.2"  # loopback, but not 127.0.0.1: nothing may rely on the usual address
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def named_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    port = free_port()
    home = tmp_path_factory.mktemp("named") / "home"
    public = f"http://{HOST_NAME}:{port}"
    srv = start_server(home, {"FLEXI_AUTH": "on", "FLEXI_PUBLIC_URL": public, "FLEXI_ORIGINS": ""}, bind=BIND, port=port)
    db = ServerDB(home)
    try:
        db.add_user("nora", password_hash=hash_password(PASSWORD), display_name="Nora")
        yield srv, public
    finally:
        db.close()
        stop_server(srv)


@pytest.fixture(scope="module")
def named_browser() -> Iterator[Any]:
    """Chromium that resolves flexi.test to the server (its own launch: the host rule is a launch flag)."""
    _require()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        rules = f"--host-resolver-rules=MAP {HOST_NAME} {BIND}, MAP {EVIL_NAME} {BIND}"
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*LAUNCH_ARGS, rules])
        yield b
        b.close()


def test_sign_in_and_chat_under_the_public_host_name(named_browser: Any, named_server: tuple[RunningServer, str]) -> None:
    _srv, public = named_server
    context = named_browser.new_context(locale="en-GB")
    refused: list[str] = []
    posts: list[Any] = []
    try:
        page = context.new_page()
        page.on("response", lambda r: refused.append(f"{r.status} {r.request.method} {r.url}") if r.status == 403 else None)
        page.on("requestfinished", lambda r: posts.append(r) if r.method == "POST" else None)
        page.goto(public + "/")
        page.fill("#login-user", "nora")
        page.fill("#login-pass", PASSWORD)
        page.press("#login-pass", "Enter")
        page.wait_for_selector("#prompt")
        page.click("details.advanced summary")
        page.fill("#max-tokens", "4")
        page.dispatch_event("#max-tokens", "change")
        page.fill("#prompt", "Say hi")
        page.press("#prompt", "Enter")
        page.wait_for_selector("article.msg.assistant .meta:has-text('tokens/s')", timeout=120_000)
        assert refused == []
        assert {r.all_headers().get("origin") for r in posts} == {public}  # same-origin POSTs do carry Origin
        assert any(r.url.endswith("/api/chat") for r in posts)
    finally:
        context.close()


def test_page_of_another_origin_is_refused(named_browser: Any, named_server: tuple[RunningServer, str]) -> None:
    """A page at evil.test (resolved to the server's address too) posting to flexi.test: the guard says 403."""
    _srv, public = named_server
    context = named_browser.new_context()
    try:
        page = context.new_page()
        page.goto(public.replace(HOST_NAME, EVIL_NAME) + "/")  # Flexi refuses this host; the page's origin is what counts
        with page.expect_response(lambda r: r.url.endswith("/auth/password")) as answer:
            page.evaluate("""url => fetch(url + '/auth/password', {method: 'POST', mode: 'no-cors',
                headers: {'Content-Type': 'text/plain'}, body: '{"username":"nora","password":"x"}'}).catch(() => null)""",
                          public)
        # a simple cross-site POST (no preflight) reaches the server and is refused by the Origin guard (the
        # route itself would answer 401 or 422, never 403; the body of an opaque answer is not readable here)
        assert answer.value.status == 403
    finally:
        context.close()
