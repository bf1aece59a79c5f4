"""The web interface's HTTP side against a real server with auth on: who may load what,
the security headers, and CSRF protection of cookie sign-ins."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from flexi.access.passwords import hash_password
from tests.access_helpers import ServerDB
from tests.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, ServerDB]]:
    home = tmp_path_factory.mktemp("webroutes") / "home"
    server = start_server(home, {"FLEXI_AUTH": "on"})
    try:
        yield server, ServerDB(home)
    finally:
        stop_server(server)


def _sign_in(server: RunningServer, db: ServerDB, subject: str, role: str = "student") -> httpx.Client:
    db.add_user(subject, role=role, password_hash=hash_password("pw-" + subject))
    client = httpx.Client(base_url=server.url, timeout=60)
    r = client.post("/auth/password", json={"username": subject, "password": "pw-" + subject})
    assert r.status_code == 200 and r.json()["csrf_token"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # plain http here
    return client


def test_root_is_the_page_for_browsers_and_needs_a_key_for_api_clients(srv: tuple[RunningServer, ServerDB]) -> None:
    server, _db = srv
    page = httpx.get(server.url + "/", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/assets/app.js' in page.text
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(server.url + "/").status_code == 401  # Ollama clients probing "/" need a key when auth is on
    assert httpx.post(server.url + "/", headers=HTML).status_code in (401, 405)


def test_api_docs_come_from_the_package_under_the_same_csp(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    assert httpx.get(server.url + "/docs", headers=HTML).status_code == 401  # like every route when auth is on
    client = _sign_in(server, db, "docs-reader", role="researcher")
    page = client.get("/docs", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/ui/assets/vendor/swagger-ui-bundle.js" in page.text and "<script>" not in page.text
    assert "cdn.jsdelivr" not in page.text and "unsafe-inline" not in page.headers["content-security-policy"]
    for asset in ("/ui/assets/vendor/swagger-ui-bundle.js", "/ui/assets/vendor/swagger-ui.css", "/ui/assets/docs.js"):
        assert httpx.get(server.url + asset).status_code == 200, asset
    assert client.get("/openapi.json").json()["info"]["title"] == "Flexi"
    assert client.get("/redoc").status_code == 404  # ReDoc would come from a CDN: not offered


def test_assets_and_config_are_public_but_nothing_else_is(srv: tuple[RunningServer, ServerDB]) -> None:
    server, _db = srv
    for path in ("/ui/assets/app.js", "/ui/assets/vendor/purify.es.mjs", "/ui/assets/style.css", "/ui/config"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200, path
        assert "content-security-policy" in r.headers
    assert httpx.get(server.url + "/ui/assets/app.js").headers["content-type"].startswith("text/javascript")
    config = httpx.get(server.url + "/ui/config").json()
    assert config["auth"] == "on" and config["chat_history"] in ("browser", "server")
    assert httpx.get(server.url + "/ui/assets/../../pyproject.toml").status_code in (401, 404)  # normalized by the client
    assert httpx.get(server.url + "/ui/assets/%2e%2e/routes.py").status_code == 404
    for path in ("/ui/models", "/admin/usage/chart.svg"):
        assert httpx.get(server.url + path).status_code == 401, path


def test_cookie_changes_need_the_csrf_token_keys_do_not(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    client = _sign_in(server, db, "csrf-user")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_predict": 2}}
    forged = client.post("/api/chat", json=body)  # what a foreign page could make the browser send
    assert forged.status_code == 403 and forged.json()["code"] == "csrf_failed"
    assert "X-Flexi-CSRF" in forged.json()["error"]
    assert client.post("/api/chat", json=body, headers={"X-Flexi-CSRF": "0" * 43}).status_code == 403
    token = client.get("/me").json()["csrf_token"]
    ok = client.post("/api/chat", json=body, headers={"X-Flexi-CSRF": token})
    assert ok.status_code == 200 and ok.json()["done"] is True
    assert client.get("/api/tags").status_code == 200  # reading needs no token
    assert client.patch("/me", json={"locale": "en"}).status_code == 403
    changed = client.patch("/me", json={"locale": "en"}, headers={"X-Flexi-CSRF": token})
    assert changed.status_code == 200 and changed.json()["locale"] == "en"
    assert client.patch("/me", json={"locale": "fr"}, headers={"X-Flexi-CSRF": token}).status_code == 422
    assert client.patch("/me", json={"role": "admin"}, headers={"X-Flexi-CSRF": token}).status_code in (400, 422)
    # another session's token does not fit this session
    other = _sign_in(server, db, "csrf-other")
    other_token = other.get("/me").json()["csrf_token"]
    assert client.post("/api/chat", json=body, headers={"X-Flexi-CSRF": other_token}).status_code == 403
    # a foreign site cannot even ask: the Origin check refuses it before the cookie is looked at
    evil = client.post("/api/chat", json=body, headers={"X-Flexi-CSRF": token, "Origin": "https://evil.example"})
    assert evil.status_code == 403
    _uid = db.add_user("csrf-keyuser")
    _kid, key = db.add_key(_uid)
    assert httpx.post(server.url + "/api/chat", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_ui_models_lists_what_the_caller_may_use_with_facts(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    uid = db.add_user("models-user")
    _kid, key = db.add_key(uid)
    models = httpx.get(server.url + "/ui/models", headers={"Authorization": f"Bearer {key}"}).json()["models"]
    smol = next(m for m in models if m["name"] == MODEL)
    assert smol["languages"] == ["en"] and smol["license"] == "apache-2.0" and smol["size"] > 50_000_000
    assert smol["parameter_size"] and smol["quantization"] == "Q4_1"
    db.add_policy("smollm2*", allowed_roles=["teacher"])
    try:
        import time

        time.sleep(5.5)  # policies are cached for 5 s
        hidden = httpx.get(server.url + "/ui/models", headers={"Authorization": f"Bearer {key}"}).json()["models"]
        assert MODEL not in [m["name"] for m in hidden]
    finally:
        db.clear_policies()


def test_usage_chart_is_for_admins_and_is_svg(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    student = db.add_user("chart-student")
    admin = db.add_user("chart-admin", role="admin")
    _k1, skey = db.add_key(student)
    _k2, akey = db.add_key(admin, scopes=["admin", "inference"])
    assert httpx.get(server.url + "/admin/usage/chart.svg", headers={"Authorization": f"Bearer {skey}"}).status_code == 403
    r = httpx.get(server.url + "/admin/usage/chart.svg?by=model&metric=tokens&lang=de",
                  headers={"Authorization": f"Bearer {akey}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg") and "Tokens pro Modell" in r.text
    bad = httpx.get(server.url + "/admin/usage/chart.svg?by=user", headers={"Authorization": f"Bearer {akey}"})
    assert bad.status_code == 400 and "Traceback" not in bad.text
    assert httpx.get(server.url + "/admin/usage/chart.svg?days=0", headers={"Authorization": f"Bearer {akey}"}).status_code == 400
