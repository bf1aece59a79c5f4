"""Browser sign-in end to end: OpenID Connect against a real provider process
(tests/oidc_provider.py: real HTTP, real RS256 signatures) and local accounts."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from flexi.access.passwords import hash_password
from tests.access_helpers import ServerDB
from tests.conftest import RunningServer, free_port, start_server, stop_server
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET

pytestmark = pytest.mark.e2e


@dataclass
class Sso:
    flexi: RunningServer
    db: ServerDB
    idp: str
    ca: str  # the provider's self-signed certificate

    def to_idp(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, url, verify=ssl.create_default_context(cafile=self.ca), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sso]:
    port = free_port()
    idp = f"https://127.0.0.1:{port}"
    tls = tmp_path_factory.mktemp("idp-tls")
    ca, key = str(tls / "cert.pem"), str(tls / "key.pem")
    provider = subprocess.Popen([sys.executable, "-m", "tests.oidc_provider", str(port), ca, key])
    deadline = time.monotonic() + 30
    while True:
        try:
            trust = ssl.create_default_context(cafile=ca)
            httpx.get(idp + "/.well-known/openid-configuration", timeout=1, verify=trust).raise_for_status()
            break
        except (httpx.HTTPError, OSError):  # not listening yet, or the certificate not written yet
            if time.monotonic() > deadline:
                provider.kill()
                raise
            time.sleep(0.1)
    flexi = start_server(tmp_path_factory.mktemp("sso") / "home", {
        "FLEXI_AUTH": "on", "FLEXI_OIDC_ISSUER": idp, "FLEXI_OIDC_CLIENT_ID": CLIENT_ID,
        "FLEXI_OIDC_CLIENT_SECRET": CLIENT_SECRET, "FLEXI_OIDC_ROLE_CLAIM": "realm_access.roles",
        "FLEXI_OIDC_ROLE_MAP": json.dumps({"faculty": "teacher", "it-admins": "admin"}),
        "FLEXI_ADMINS": "boss-sub", "SSL_CERT_FILE": ca})  # Flexi trusts the provider's certificate
    db = ServerDB(flexi.home)
    try:
        yield Sso(flexi, db, idp, ca)
    finally:
        db.close()
        stop_server(flexi)
        provider.terminate()
        provider.wait(10)


def sign_in(sso: Sso, claims: dict, misbehave: str | None = None, next_path: str | None = None,
            tamper_state: bool = False) -> httpx.Response:
    """Drive the browser's redirects by hand; returns Flexi's answer to the callback."""
    sso.to_idp("POST", sso.idp + "/_test/next", json={"claims": claims, "misbehave": misbehave}).raise_for_status()
    with httpx.Client() as browser:  # keeps the pre-auth cookie, like the browser that starts the sign-in
        start = browser.get(sso.flexi.url + "/auth/login", params={"next": next_path} if next_path else None)
        assert start.status_code == 302, start.text
        at_idp = sso.to_idp("GET", start.headers["location"])
        assert at_idp.status_code == 302, at_idp.text
        back = at_idp.headers["location"]
        if tamper_state:
            query = parse_qs(urlparse(back).query)
            back = back.split("?")[0] + f"?code={query['code'][0]}&state=forged"
        return browser.get(back)


def cookie_of(r: httpx.Response) -> dict[str, str]:
    return {"Cookie": f"flexi_session={r.cookies['flexi_session']}"}


def test_sign_in_maps_role_and_groups_and_opens_the_api(sso: Sso) -> None:
    r = sign_in(sso, {"sub": "t-100", "name": "Prof. T", "email": "t@uni.example",
                      "realm_access": {"roles": ["student", "faculty"]}, "groups": ["ml-staff", "all"]},
                next_path="/me")
    assert r.status_code == 302 and r.headers["location"] == "/me"
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    me = httpx.get(sso.flexi.url + "/me", headers=cookie_of(r)).json()
    assert (me["subject"], me["role"], me["display_name"]) == ("t-100", "teacher", "Prof. T")
    assert me["groups"] == ["all", "ml-staff"]
    assert httpx.get(sso.flexi.url + "/api/tags", headers=cookie_of(r)).status_code == 200
    assert httpx.get(sso.flexi.url + "/api/tags").status_code == 401
    # the next sign-in replaces the groups with exactly the claimed ones
    r2 = sign_in(sso, {"sub": "t-100", "realm_access": {"roles": ["faculty"]}, "groups": ["all"]})
    assert httpx.get(sso.flexi.url + "/me", headers=cookie_of(r2)).json()["groups"] == ["all"]


def test_no_role_claim_gives_default_role_and_admins_come_from_configuration(sso: Sso) -> None:
    first = sign_in(sso, {"sub": "first-ever"})
    assert httpx.get(sso.flexi.url + "/me", headers=cookie_of(first)).json()["role"] == "student"
    assert httpx.get(sso.flexi.url + "/admin/users", headers=cookie_of(first)).status_code == 403
    boss = sign_in(sso, {"sub": "boss-sub"})
    assert httpx.get(sso.flexi.url + "/me", headers=cookie_of(boss)).json()["role"] == "admin"
    assert httpx.get(sso.flexi.url + "/admin/users", headers=cookie_of(boss)).status_code == 200


@pytest.mark.parametrize("misbehave", ["other_key", "wrong_audience", "wrong_nonce", "expired", "wrong_issuer"])
def test_unacceptable_id_tokens_are_refused(sso: Sso, misbehave: str) -> None:
    r = sign_in(sso, {"sub": f"victim-{misbehave}"}, misbehave=misbehave)
    assert r.status_code == 401, r.text
    assert "flexi_session" not in r.cookies and "error" in r.json()
    assert sso.db.usage(sso.db.pseudonym(f"victim-{misbehave}")) == []


def test_forged_state_and_replayed_callback_are_refused(sso: Sso) -> None:
    r = sign_in(sso, {"sub": "state-user"}, tamper_state=True)
    assert r.status_code == 400 and "state" in r.json()["error"]
    assert httpx.get(sso.flexi.url + "/auth/callback", params={"code": "x"}).status_code == 400


@pytest.mark.parametrize("target", ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_no_open_redirect(sso: Sso, target: str) -> None:
    r = sign_in(sso, {"sub": "redirect-user"}, next_path=target)
    assert r.status_code == 302 and r.headers["location"] == "/"


def test_logout_ends_the_session(sso: Sso) -> None:
    r = sign_in(sso, {"sub": "leaving-user"})
    cookie = cookie_of(r)
    assert httpx.get(sso.flexi.url + "/api/tags", headers=cookie).status_code == 200
    forged = httpx.post(sso.flexi.url + "/auth/logout", headers=cookie)  # another page's form: no token
    assert forged.status_code == 403 and forged.json()["code"] == "csrf_failed"
    assert httpx.get(sso.flexi.url + "/api/tags", headers=cookie).status_code == 200
    token = httpx.get(sso.flexi.url + "/me", headers=cookie).json()["csrf_token"]
    out = httpx.post(sso.flexi.url + "/auth/logout", headers={**cookie, "X-Flexi-CSRF": token})
    assert out.status_code == 204 and "flexi_session" in out.headers["set-cookie"]
    assert httpx.get(sso.flexi.url + "/api/tags", headers=cookie).status_code == 401


def test_providers_are_public(sso: Sso) -> None:
    assert httpx.get(sso.flexi.url + "/auth/providers").json()["oidc"] is True


def test_local_password_sign_in(sso: Sso) -> None:
    uid = sso.db.add_user("local-anna", role="researcher", password_hash=hash_password("correct horse"))
    url = sso.flexi.url + "/auth/password"
    ok = httpx.post(url, json={"username": "local-anna", "password": "correct horse"})
    assert ok.status_code == 200 and ok.json()["user"]["id"] == uid
    assert httpx.get(sso.flexi.url + "/api/tags", headers=cookie_of(ok)).status_code == 200
    same = set()
    for body in ({"username": "local-anna", "password": ""}, {"username": "local-anna"},
                 {"username": "local-anna", "password": "wrong horse"}, {"username": "nobody", "password": "correct horse"},
                 {"username": "", "password": ""}):
        r = httpx.post(url, json=body)
        assert r.status_code == 401, (body, r.text)
        same.add(r.json()["error"])
    assert len(same) == 1  # no hint whether the user exists
    assert httpx.post(url, json={"username": "local-anna", "password": "x", "role": "admin"}).status_code == 422


def test_password_guessing_is_throttled(sso: Sso) -> None:
    sso.db.add_user("target-user", password_hash=hash_password("right password"))
    url = sso.flexi.url + "/auth/password"
    codes = [httpx.post(url, json={"username": "target-user", "password": f"guess{i}"},
                        headers={"Accept-Language": "de"}).status_code for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429  # after 5 failures: a wait (backoff), see tests/access/test_sso_and_origins.py
    blocked = httpx.post(url, json={"username": "target-user", "password": "right password"}, headers={"Accept-Language": "de"})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "fehlgeschlagene Anmeldungen" in blocked.json()["error"]


def test_sign_in_without_sso_configured(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_server(tmp_path_factory.mktemp("nosso") / "home", {"FLEXI_AUTH": "on"})
    try:
        r = httpx.get(srv.url + "/auth/login")
        assert r.status_code == 404 and "not configured" in r.json()["error"]
    finally:
        stop_server(srv)
