"""The LTI 1.3 tool end to end: a real platform (`lti1p3platform`, tests/lti_platform.py) drives a real
`flexi serve` (FLEXI_AUTH=on, the real model): login → launch → chat, deep linking (pick and create), the
resource link remembering its assistant, dynamic registration, and every refused launch the issue names —
each a page in the person's language, logged without token contents."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, free_port, start_server, stop_server
from tests.lti_platform import ADMINISTRATOR, INSTRUCTOR, LEARNER, Browser, Platform, form_of, rsa_pem_pair, start_platform

pytestmark = pytest.mark.e2e
FLEXI_CLAIMS = "https://purl.imsglobal.org/spec/lti/claim/"


@dataclass
class Campus:
    srv: RunningServer
    db: ServerDB
    platform: Platform
    admin: dict[str, str]
    platform_id: int

    @property
    def url(self) -> str:
        return self.srv.url

    def log(self) -> str:
        return self.srv.log_path.read_text(errors="replace")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def campus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    port = free_port()
    tool = f"http://localhost:{port}"  # another site than the platform's 127.0.0.1: cookies are kept apart
    env = {"FLEXI_AUTH": "on", "FLEXI_ADMINS": "lti-boss", "FLEXI_LTI_ALLOW_HOSTS": "127.0.0.1"}
    url = None
    if request.param == "postgresql":  # logins, links and tickets live in the shared database (replicas)
        pg = request.getfixturevalue("postgres_server")
        url = env["FLEXI_DATABASE_URL"] = pg.url(pg.create_database())
    platform = start_platform(tool)
    srv = start_server(tmp_path_factory.mktemp(f"lti-{request.param}") / "home", env, port=port)
    srv.url = tool
    db = ServerDB(srv.home, url)
    boss = db.add_user("lti-boss", role="admin", locale="en")
    admin = {"Authorization": f"Bearer {db.add_key(boss)[1]}"}
    r = httpx.post(tool + "/admin/lti/platforms", json=platform.admin_body(), headers=admin, timeout=30)
    assert r.status_code == 201, r.text
    try:
        yield Campus(srv, db, platform, admin, r.json()["id"])
    finally:
        platform.stop()
        db.close()
        stop_server(srv)


def _launch_page(browser: Browser, campus: Campus, user: str, roles: list[str], **extra: Any) -> httpx.Response:
    """Click the activity in the platform: login initiation → Flexi → platform auth → the auto-post form."""
    page = browser.get(campus.platform.start_url(user, roles, **extra))
    assert page.status_code == 200 and "id_token" in page.text, page.text[:300]
    return page


def _claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _refused(response: httpx.Response, key: str, status: int, campus: Campus, token: str | None = None) -> None:
    assert response.status_code == status, response.text[:500]
    assert f'data-lti-error="{key}"' in response.text
    assert "frame-ancestors " + campus.platform.url in response.headers["content-security-policy"]
    log = campus.log()
    assert "LTI launch refused" in log or "LTI login refused" in log or "LTI deep linking refused" in log
    if token is not None:
        assert token.split(".")[1][:40] not in log and token.split(".")[2][:40] not in log


def _chat(browser: Browser, campus: Campus, slug: str) -> dict[str, Any]:
    me = browser.get(campus.url + "/me")
    assert me.status_code == 200, me.text
    r = browser.client.post(campus.url + f"/assistants/{slug}/chat", headers={
        **browser.cookie_header(campus.url), "X-Flexi-CSRF": me.json()["csrf_token"]},
        json={"messages": [{"role": "user", "content": "Hallo"}], "stream": False})
    assert r.status_code == 200, r.text
    return {"me": me.json(), "answer": r.json()}


# --- deep linking, then the students' launch into the chat ------------------------------------------
def test_teacher_creates_an_assistant_by_deep_linking_and_a_student_lands_in_its_chat(campus: Campus) -> None:
    teacher = Browser()
    page = _launch_page(teacher, campus, "t-100", [INSTRUCTOR], context="course-1", context_title="Statistik 1",
                        link=None, deep_link=True, name="Tanja Teacher", email="t@uni.example")
    choice = teacher.submit(page)
    assert choice.status_code == 200 and 'action="/lti/deeplink"' in choice.text, choice.text[:500]
    assert "Dieser Kurs hat noch keinen Assistenten." in choice.text  # the platform said locale de
    assert "frame-ancestors " + campus.platform.url in choice.headers["content-security-policy"]
    assert "x-frame-options" not in choice.headers
    action, fields = form_of(choice.text)
    answer = teacher.request("POST", campus.url + action, data={
        "ticket": fields["ticket"], "new_name": "Statistik-Tutor", "new_model": MODEL,
        "new_prompt": "Du bist ein Statistik-Tutor."})
    assert answer.status_code == 200 and "data-autosubmit" in answer.text, answer.text[:500]
    assert "form-action 'self' " + campus.platform.url in answer.headers["content-security-policy"]
    saved = teacher.submit(answer)  # the platform checks the JWT against Flexi's /lti/jwks
    assert saved.status_code == 200 and saved.json() == {"saved": 1}, saved.text
    (item,) = campus.platform.content_items[-1]
    assert item["type"] == "ltiResourceLink" and item["title"] == "Statistik-Tutor"
    assert item["url"] == campus.url + "/lti/launch"
    slug = item["custom"]["assistant"]
    # the teacher, signed in by the launch, edits the assistant in Flexi (short answers for this test)
    me = teacher.get(campus.url + "/me").json()
    assert [c["role"] for c in me["courses"]] == ["teacher"] and me["role"] == "student"
    changed = teacher.client.patch(campus.url + f"/assistants/{slug}", json={"options": {"num_predict": 4}}, headers={
        **teacher.cookie_header(campus.url), "X-Flexi-CSRF": me["csrf_token"]})
    assert changed.status_code == 200, changed.text
    # the ticket was good once
    again = teacher.request("POST", campus.url + "/lti/deeplink", data={"ticket": fields["ticket"], "assistant": slug})
    _refused(again, "lti_deep_link_expired", 400, campus)

    student = Browser()
    page = _launch_page(student, campus, "s-200", [LEARNER], context="course-1", link="link-7",
                        custom={"assistant": slug}, locale="en")
    landed = student.submit(page)  # follows the redirect to the chat page
    assert landed.status_code == 200 and str(landed.url).endswith(f"/lti/app?platform={campus.platform_id}#/a/{slug}")
    assert "frame-ancestors " + campus.platform.url in landed.headers["content-security-policy"]
    assert "x-frame-options" not in landed.headers
    out = _chat(student, campus, slug)
    assert out["me"]["role"] == "student" and out["me"]["subject"].startswith("lti:")
    assert out["me"]["subject"] != "s-200" and out["me"]["locale"] == "en"
    (course,) = out["me"]["courses"]
    assert course["role"] == "student" and course["title"] == "Statistik 1" and course["name"].startswith("lti-")
    assert out["answer"]["message"]["role"] == "assistant" and out["answer"]["done"] is True

    # the resource link remembers its assistant: launched again without the custom parameter
    page = _launch_page(student, campus, "s-200", [LEARNER], context="course-1", link="link-7")
    redirect = student.request("POST", campus.url + "/lti/launch", data=form_of(page.text)[1], follow=False)
    assert redirect.status_code == 303 and redirect.headers["location"].endswith(f"#/a/{slug}")
    cookie = next(v for v in redirect.headers.get_list("set-cookie") if v.startswith("flexi_lti_session="))
    assert "SameSite=None; Secure" in cookie
    assert "HttpOnly" in cookie and "Partitioned" in cookie

    # a teacher picks the existing assistant for a second link
    page = _launch_page(teacher, campus, "t-100", [INSTRUCTOR], context="course-1", link=None, deep_link=True)
    choice = teacher.submit(page)
    assert f'value="{slug}"' in choice.text and "Statistik-Tutor" in choice.text
    action, fields = form_of(choice.text)
    answer = teacher.request("POST", campus.url + action, data={"ticket": fields["ticket"], "assistant": slug})
    assert teacher.submit(answer).json() == {"saved": 1}
    assert campus.platform.content_items[-1][0]["custom"] == {"assistant": slug}


def test_other_platform_courses_are_apart_and_admins_are_not_flexi_admins(campus: Campus) -> None:
    browser = Browser()
    page = _launch_page(browser, campus, "adm-1", [ADMINISTRATOR], context="course-9", link="link-9", locale="en")
    assert browser.submit(page).status_code == 200
    me = browser.get(campus.url + "/me").json()
    assert me["role"] == "student"  # a Moodle site admin is not Flexi's admin (trust_admins is off)
    assert [c["role"] for c in me["courses"]] == ["teacher"]  # … but teaches the launched course
    assert browser.get(campus.url + "/admin/users").status_code == 403


def test_inside_the_shell_only_the_lti_session_counts(campus: Campus) -> None:
    """Moodle and Flexi on one site: the browser sends the first-party (SameSite=Lax) session cookie inside
    the iframe too. The shell's calls (X-Flexi-LTI) and the /lti/ routes act as the launched person only."""
    teacher = Browser()
    own = campus.db.add_user("fp-teacher", role="admin")
    first_party = campus.db.add_session(own)
    teacher.cookies.setdefault(urlsplit(campus.url).netloc, {})["flexi_session"] = first_party
    page = _launch_page(teacher, campus, "t-500", [INSTRUCTOR], context="course-50", link=None, deep_link=True)
    choice = teacher.submit(page)
    action, fields = form_of(choice.text)
    shell = {"X-Flexi-LTI": "1"}
    me = teacher.get(campus.url + "/me", headers=shell)
    assert me.status_code == 200 and me.json()["subject"].startswith("lti:"), me.text
    assert [c["role"] for c in me.json()["courses"]] == ["teacher"] and me.json()["role"] == "student"
    assert teacher.get(campus.url + "/me").json()["subject"] == "fp-teacher"  # the first-party page is unchanged
    assert teacher.get(campus.url + "/admin/users", headers=shell).status_code == 403  # not the admin in the frame
    answer = teacher.request("POST", campus.url + action, data={
        "ticket": fields["ticket"], "new_name": "Shell-Tutor", "new_model": MODEL})
    assert answer.status_code == 200 and "data-autosubmit" in answer.text, answer.text[:500]
    assert teacher.submit(answer).json() == {"saved": 1}
    # the header only narrows: without an LTI session it signs nobody in, whatever other cookie is there
    other = Browser()
    other.cookies.setdefault(urlsplit(campus.url).netloc, {})["flexi_session"] = first_party
    assert other.get(campus.url + "/me", headers=shell).status_code == 401
    assert other.get(campus.url + "/me").status_code == 200
    # signing out in the shell ends the LTI session, not the first-party one
    jar = teacher.cookies[urlsplit(campus.url).netloc]
    lti_token = jar["flexi_lti_session"]
    out = teacher.request("POST", campus.url + "/auth/logout", headers={**shell, "X-Flexi-CSRF": me.json()["csrf_token"]})
    assert out.status_code == 204, out.text
    assert "flexi_lti_session" not in jar and jar["flexi_session"] == first_party
    jar["flexi_lti_session"] = lti_token  # even a browser that kept the cookie: the session is over
    assert teacher.get(campus.url + "/me", headers=shell).status_code == 401
    assert teacher.get(campus.url + "/me").json()["subject"] == "fp-teacher"


# --- refused launches ---------------------------------------------------------------------------------
def _started(campus: Campus, user: str = "s-300", **extra: Any) -> tuple[Browser, httpx.Response, dict[str, Any]]:
    browser = Browser()
    page = _launch_page(browser, campus, user, [LEARNER], **extra)
    return browser, page, _claims_of(form_of(page.text)[1]["id_token"])


def _post_token(browser: Browser, campus: Campus, page: httpx.Response, token: str) -> httpx.Response:
    return browser.request("POST", campus.url + "/lti/launch", data={**form_of(page.text)[1], "id_token": token})


@pytest.mark.parametrize("case, key, status", [
    ("expired", "lti_expired", 401), ("wrongly_signed", "lti_signature", 401), ("wrong_audience", "lti_audience", 401),
    ("wrong_issuer", "lti_issuer", 401), ("unknown_deployment", "lti_deployment", 403),
    ("wrong_version", "lti_version", 401), ("not_rs256", "lti_signature", 401)])
def test_bad_id_tokens_are_refused_with_a_page_and_logged_without_the_token(campus: Campus, case: str, key: str,
                                                                           status: int) -> None:
    browser, page, claims = _started(campus, locale="en")
    claims.pop("iat", None), claims.pop("exp", None)
    now = int(time.time())
    if case == "expired":
        token = campus.platform.sign({**claims, "iat": now - 3600, "exp": now - 1800}, expiration=None)
    elif case == "wrongly_signed":
        token = campus.platform.sign(claims, private=rsa_pem_pair()[0])  # same kid, another key
    elif case == "wrong_audience":
        token = campus.platform.sign({**claims, "aud": "another-tool", "azp": "another-tool"})
    elif case == "wrong_issuer":
        token = campus.platform.sign({**claims, "iss": "https://moodle.evil.example"})
    elif case == "unknown_deployment":
        token = campus.platform.sign({**claims, FLEXI_CLAIMS + "deployment_id": "deployment-unknown"})
    elif case == "wrong_version":
        token = campus.platform.sign({**claims, FLEXI_CLAIMS + "version": "1.1"})
    else:  # alg none: nothing in the token may choose a weaker check
        head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = f"{head}.{body}.c2ln"
    response = _post_token(browser, campus, page, token)
    _refused(response, key, status, campus, token)
    assert "could not be opened" in response.text  # the platform said locale en
    assert "flexi_lti_session" not in response.headers.get("set-cookie", "")


def test_a_replayed_launch_is_refused(campus: Campus) -> None:
    browser, page, _claims = _started(campus)
    assert browser.submit(page).status_code == 200
    replay = browser.submit(page, headers={"Accept-Language": "de"})  # the token is not read: the browser's language
    _refused(replay, "lti_state", 400, campus, form_of(page.text)[1]["id_token"])
    assert "Start ist unbekannt" in replay.text


def test_a_nonce_used_twice_is_refused(campus: Campus) -> None:
    browser, page, first = _started(campus, user="s-301")
    assert browser.submit(page).status_code == 200
    _browser, page2, second = _started(campus, user="s-301")
    assert second["nonce"] != first["nonce"]
    second.pop("iat"), second.pop("exp")
    token = campus.platform.sign({**second, "nonce": first["nonce"]})  # validly signed, an old nonce
    _refused(_post_token(_browser, campus, page2, token), "lti_nonce", 401, campus, token)


def test_a_state_from_another_browser_is_refused_and_stays_for_its_own(campus: Campus) -> None:
    owner, page, _claims = _started(campus, user="s-302")
    thief = Browser()
    _refused(thief.submit(page), "lti_other_browser", 400, campus)
    assert owner.submit(page).status_code == 200  # the owner's launch still works


def test_a_learner_cannot_deep_link(campus: Campus) -> None:
    browser = Browser()
    page = _launch_page(browser, campus, "s-303", [LEARNER], link=None, deep_link=True)
    response = browser.submit(page)
    _refused(response, "lti_deep_link_teacher", 403, campus)
    assert "nur Lehrende des Kurses" in response.text


def test_unknown_platform_at_login_is_refused(campus: Campus) -> None:
    r = httpx.get(campus.url + "/lti/login", params={"iss": "https://unknown.example", "login_hint": "x",
                                                     "target_link_uri": campus.url + "/lti/launch"},
                  headers={"Accept-Language": "en"}, timeout=30)
    _refused(r, "lti_unknown_platform", 400, campus)
    r = httpx.post(campus.url + "/lti/login", data={"iss": campus.platform.url, "login_hint": "x",
                                                    "client_id": campus.platform.client_id,
                                                    "lti_deployment_id": "nope"},
                   headers={"Origin": campus.platform.url}, timeout=30)  # a platform's form post: no 403 for its origin
    _refused(r, "lti_deployment", 403, campus)


# --- dynamic registration ---------------------------------------------------------------------------------
def test_dynamic_registration_by_url(campus: Campus) -> None:
    moodle = start_platform(campus.url)
    moodle.client_id = "dyn-client-7"
    try:
        made = httpx.post(campus.url + "/admin/lti/registrations", headers=campus.admin, json={}, timeout=30)
        assert made.status_code == 201, made.text
        url = made.json()["url"]
        assert url.startswith(campus.url + "/lti/register?token=")
        config = moodle.url + "/.well-known/openid-configuration"
        url += "&" + urlencode({"openid_configuration": config, "registration_token": "reg-token-1"})  # as Moodle adds them
        r = httpx.get(url, headers={"Accept-Language": "en"}, timeout=30)
        assert r.status_code == 200, r.text
        assert 'data-lti-close="1"' in r.text and "/ui/assets/lti.js" in r.text
        (sent,) = moodle.registrations
        tool = sent["https://purl.imsglobal.org/spec/lti-tool-configuration"]
        assert sent["initiate_login_uri"] == campus.url + "/lti/login"
        assert sent["redirect_uris"] == [campus.url + "/lti/launch"] and sent["jwks_uri"] == campus.url + "/lti/jwks"
        assert tool["messages"][0]["type"] == "LtiDeepLinkingRequest"
        listed = httpx.get(campus.url + "/admin/lti/platforms", headers=campus.admin, timeout=30).json()["platforms"]
        (row,) = [p for p in listed if p["client_id"] == "dyn-client-7"]
        assert row["registered_by"] == "dynamic" and row["deployment_ids"] == [moodle.deployment_id]
        assert row["auth_url"] == moodle.url + "/auth"
        # the registration URL was good once
        again = httpx.get(url, headers={"Accept-Language": "en"}, timeout=30)
        assert again.status_code == 403 and 'data-lti-error="lti_registration_token"' in again.text
        # and the dynamically registered platform launches
        browser = Browser()
        page = _launch_page(browser, Campus(campus.srv, campus.db, moodle, campus.admin, row["id"]), "d-1", [LEARNER])
        assert browser.submit(page).status_code == 200
    finally:
        moodle.stop()


@pytest.mark.parametrize("config", ["http://169.254.169.254/latest/meta-data", "http://10.1.2.3/.well-known/x",
                                    "file:///etc/passwd", "gopher://127.0.0.1:25/"])
def test_registration_cannot_reach_private_hosts_or_other_schemes(campus: Campus, config: str) -> None:
    url = httpx.post(campus.url + "/admin/lti/registrations", headers=campus.admin, json={}, timeout=30).json()["url"]
    url += "&" + urlencode({"openid_configuration": config, "registration_token": "t"})
    r = httpx.get(url, timeout=30)
    key = "lti_bad_url" if not config.startswith("http") else "lti_fetch_failed"
    assert r.status_code in (400, 502) and f'data-lti-error="{key}"' in r.text, r.text[:300]
    # the token was not spent by the failed attempt
    ok = httpx.get(url, timeout=30)
    assert 'data-lti-error="lti_registration_token"' not in ok.text


def test_registration_without_a_token_is_refused(campus: Campus) -> None:
    r = httpx.get(campus.url + "/lti/register", params={
        "openid_configuration": campus.platform.url + "/.well-known/openid-configuration"}, timeout=30)
    assert r.status_code == 403 and 'data-lti-error="lti_registration_token"' in r.text


# --- keys, headers, CLI -----------------------------------------------------------------------------------
def test_jwks_rotation_keeps_old_keys_published(campus: Campus) -> None:
    before = httpx.get(campus.url + "/lti/jwks", timeout=30).json()["keys"]
    assert before and all(k["kty"] == "RSA" and "d" not in k and k["alg"] == "RS256" for k in before)
    new = httpx.post(campus.url + "/admin/lti/keys/rotate", headers=campus.admin, json={}, timeout=30).json()["kid"]
    after = httpx.get(campus.url + "/lti/jwks", timeout=30).json()["keys"]
    assert {k["kid"] for k in after} == {k["kid"] for k in before} | {new}
    assert httpx.post(campus.url + "/lti/jwks", timeout=30).status_code == 405


def test_other_pages_still_cannot_be_framed(campus: Campus) -> None:
    page = httpx.get(campus.url + "/", headers={"Accept": "text/html"}, timeout=30)
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    unknown = httpx.get(campus.url + "/lti/app?platform=999", timeout=30)
    assert "frame-ancestors 'none'" in unknown.headers["content-security-policy"]
    # a foreign origin still cannot post anywhere else
    assert httpx.post(campus.url + "/lti/deeplink", data={"ticket": "x"}, headers={"Origin": "https://evil.example"},
                      timeout=30).status_code == 403


def test_cli_adds_lists_and_removes_platforms(campus: Campus) -> None:
    env = {"FLEXI_HOST": campus.url, "FLEXI_API_KEY": campus.admin["Authorization"].split()[1], "LANG": "C"}

    def flexi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flexi", "lti", *args], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=60)

    added = flexi("add-platform", "--issuer", "https://moodle.uni.example", "--client-id", "abc", "--deployment-id", "1",
                  "--auth-url", "https://moodle.uni.example/mod/lti/auth.php",
                  "--token-url", "https://moodle.uni.example/mod/lti/token.php",
                  "--jwks-url", "https://moodle.uni.example/mod/lti/certs.php", "--json")
    assert added.returncode == 0, added.stderr
    pid = json.loads(added.stdout)["id"]
    listed = flexi("list")
    assert "https://moodle.uni.example" in listed.stdout and "abc" in listed.stdout
    bad = flexi("add-platform", "--issuer", "x", "--client-id", "y", "--auth-url", "file:///etc/passwd",
                "--jwks-url", "https://a.example/j")
    assert bad.returncode == 1 and "http(s)" in bad.stderr + bad.stdout
    assert flexi("rm", str(pid)).returncode == 0
    assert "https://moodle.uni.example" not in flexi("list").stdout
