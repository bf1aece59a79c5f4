"""Issue 11, items 5-7: single sign-on that holds, the server's own origin, sign-in throttling
that cannot lock people out, and client addresses that only a trusted proxy may vouch for.

SSO attacks run against the real OIDC provider process (tests/oidc_provider.py, pyop over
HTTPS) and a real `flexi serve`; the pending-sign-in flood and the discovery check drive
`OidcClient` in process (ten thousand sign-ins over HTTP would only measure the machine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flexi.access import oidc
from flexi.access.oidc import OidcClient, OidcError
from flexi.access.passwords import hash_password
from flexi.access.throttle import ACCOUNT, PAIR, LoginThrottle
from flexi.config import load_settings
from flexi.http.forwarded import client_address, trusted_networks
from flexi.server.guard import RequestGuard, host_allowed, origin_allowed
from tests.conftest import RunningServer, free_port, start_server, stop_server
from tests.campus.test_auth_login import Sso, cookie_of, sign_in, sso  # noqa: F401 - module fixture: provider + Flexi
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET

# --- item 5: SSO -------------------------------------------------------------------------------------


def _start_at_provider(sso: Sso, browser: httpx.Client, claims: dict[str, Any]) -> str:
    """Start a sign-in in `browser` and come back from the provider: the callback URL (state + code)."""
    sso.to_idp("POST", sso.idp + "/_test/next", json={"claims": claims, "misbehave": None}).raise_for_status()
    start = browser.get(sso.flexi.url + "/auth/login")
    assert start.status_code == 302, start.text
    at_idp = sso.to_idp("GET", start.headers["location"])
    assert at_idp.status_code == 302, at_idp.text
    return at_idp.headers["location"]


@pytest.mark.e2e
def test_stolen_callback_url_does_nothing_in_another_browser(sso: Sso) -> None:
    """Login CSRF / a leaked callback URL: opened without the starting browser's pre-auth cookie it
    signs nobody in, and it stays usable for the browser it belongs to."""
    with httpx.Client() as victim, httpx.Client() as attacker:
        callback = _start_at_provider(sso, victim, {"sub": "callback-owner"})
        bare = httpx.get(callback)  # no cookie at all
        assert bare.status_code == 400 and "flexi_session" not in bare.cookies
        assert "browser" in bare.json()["error"]
        assert attacker.get(sso.flexi.url + "/auth/login").status_code == 302  # attacker has a pre-auth cookie of its own
        other = attacker.get(callback)
        assert other.status_code == 400 and "flexi_session" not in other.cookies
        mine = victim.get(callback)  # the rightful browser still finishes its sign-in
        assert mine.status_code == 302 and "flexi_session" in mine.cookies
        assert httpx.get(sso.flexi.url + "/me", headers=cookie_of(mine)).json()["subject"] == "callback-owner"


def _offline_client(monkeypatch: pytest.MonkeyPatch, discovery_issuer: str = "https://idp.uni.example") -> OidcClient:
    settings = load_settings(oidc_issuer="https://idp.uni.example", oidc_client_id=CLIENT_ID)
    client = OidcClient(settings)

    async def fake_get_json(url: str) -> dict[str, Any]:
        assert url == "https://idp.uni.example/.well-known/openid-configuration"
        return {"issuer": discovery_issuer, "authorization_endpoint": "https://idp.uni.example/auth",
                "token_endpoint": "https://idp.uni.example/token", "jwks_uri": "https://idp.uni.example/jwks"}

    monkeypatch.setattr(client, "_get_json", fake_get_json)
    return client


def test_login_flood_from_one_address_leaves_another_address_able_to_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,500 `GET /auth/login` from one address once filled the global table of 10,000 and refused every
    new sign-in with 429. Now the flooder only pushes out its own oldest attempts."""
    client = _offline_client(monkeypatch)

    async def flood() -> str:
        for _ in range(10_500):
            await client.login_url("https://flexi/auth/callback", None, "203.0.113.66", "f" * 43)
        url = await client.login_url("https://flexi/auth/callback", "/me", "198.51.100.7", "v" * 43)
        return url.split("state=", 1)[1].split("&", 1)[0]

    state = asyncio.run(flood())
    assert client._pending.get(state) is not None  # the other address's sign-in is pending and finishable
    assert client._pending.count("203.0.113.66") == oidc.MAX_PENDING_PER_CLIENT
    assert len(client._pending) == oidc.MAX_PENDING_PER_CLIENT + 1


def test_many_addresses_flooding_evict_the_oldest_never_refuse_all() -> None:
    pending = oidc.PendingSignIns(per_client=3, total=10)
    for i in range(50):
        pending.add(f"s{i}", oidc.Pending("n", "v", "/", "r", time.monotonic() + 60, f"10.0.0.{i}", "b"))
    assert len(pending) == 10 and pending.get("s49") is not None and pending.get("s0") is None


def test_discovery_document_naming_another_issuer_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    client = _offline_client(monkeypatch, discovery_issuer="https://evil.example")
    with caplog.at_level(logging.ERROR, logger="flexi.oidc"), pytest.raises(OidcError) as refused:
        asyncio.run(client.login_url("https://flexi/auth/callback", None, "198.51.100.7", "v" * 43))
    assert refused.value.status == 502 and "issuer" in refused.value.message
    assert "https://evil.example" in caplog.text and "FLEXI_OIDC_ISSUER" in caplog.text
    assert len(client._pending) == 0


@pytest.mark.e2e
@pytest.mark.parametrize("extra", [{"aud": [CLIENT_ID, "other-app"]},  # several audiences, no azp
                                   {"aud": [CLIENT_ID, "other-app"], "azp": "other-app"},
                                   {"azp": "other-app"}])  # one audience, but issued to another client
def test_id_token_for_several_audiences_without_our_azp_is_refused(sso: Sso, extra: dict[str, Any]) -> None:
    r = sign_in(sso, {"sub": "azp-victim", **extra}, misbehave="custom-claims")
    assert r.status_code == 401 and "azp" in r.json()["error"] and "flexi_session" not in r.cookies


@pytest.mark.e2e
def test_id_token_for_several_audiences_with_our_azp_is_accepted(sso: Sso) -> None:
    r = sign_in(sso, {"sub": "azp-ok", "aud": [CLIENT_ID, "other-app"], "azp": CLIENT_ID}, misbehave="custom-claims")
    assert r.status_code == 302 and "flexi_session" in r.cookies


@pytest.mark.e2e
def test_idp_role_named_admin_does_not_make_a_flexi_admin(sso: Sso) -> None:
    r = sign_in(sso, {"sub": "realm-admin", "realm_access": {"roles": ["admin"]}})
    assert httpx.get(sso.flexi.url + "/me", headers=cookie_of(r)).json()["role"] == "student"
    assert httpx.get(sso.flexi.url + "/admin/users", headers=cookie_of(r)).status_code == 403
    mapped = sign_in(sso, {"sub": "it-admin", "realm_access": {"roles": ["it-admins"]}})  # explicit map entry
    assert httpx.get(sso.flexi.url + "/me", headers=cookie_of(mapped)).json()["role"] == "admin"


# --- item 6: the server's own origin ---------------------------------------------------------------------

async def _guard(settings: Any, headers: dict[str, str], peer: str = "127.0.0.1", scheme: str = "http") -> int:
    """Status of a POST through the request guard (the app behind it answers 200)."""
    statuses: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"type": "http", "method": "POST", "path": "/api/chat", "scheme": scheme, "client": (peer, 50000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    await RequestGuard(app, settings)(scope, receive, send)
    return statuses[0]


def test_same_origin_post_behind_public_url_is_admitted_and_evil_origin_refused() -> None:
    s = load_settings(host="127.0.0.1:11434", public_url="https://llm.uni.example/")
    proxied = {"Host": "llm.uni.example", "Origin": "https://llm.uni.example", "Content-Type": "application/json"}
    assert asyncio.run(_guard(s, proxied)) == 200
    assert asyncio.run(_guard(s, {**proxied, "Origin": "https://evil.example"})) == 403
    assert asyncio.run(_guard(s, {**proxied, "Origin": "https://llm.uni.example.evil.example"})) == 403
    assert asyncio.run(_guard(s, {**proxied, "Origin": "null"})) == 403
    assert host_allowed("llm.uni.example", s) and not host_allowed("evil.example", s)


def test_own_origin_through_a_trusted_proxy_is_admitted_forged_forwarded_host_is_not() -> None:
    s = load_settings(host="0.0.0.0:11434", trusted_proxies="10.0.0.5", auth="on")
    via_proxy = {"Host": "10.0.0.9:11434", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "chat.uni.example",
                 "Origin": "https://chat.uni.example"}
    assert asyncio.run(_guard(s, via_proxy, peer="10.0.0.5")) == 200
    assert asyncio.run(_guard(s, via_proxy, peer="192.0.2.44")) == 403  # not the proxy: its X-Forwarded-* mean nothing
    assert asyncio.run(_guard(s, {**via_proxy, "Origin": "https://evil.example"}, peer="10.0.0.5")) == 403
    assert asyncio.run(_guard(s, {"Host": "llm.uni.example", "Origin": "http://llm.uni.example"},
                              peer="192.0.2.44")) == 200  # direct: the Host header with the connection's scheme
    assert asyncio.run(_guard(s, {"Host": "llm.uni.example", "Origin": "https://llm.uni.example"},
                              peer="192.0.2.44")) == 403  # ...and not another scheme
    assert not origin_allowed("https://evil.example", s, "https://chat.uni.example")


# --- item 7: addresses and throttling ------------------------------------------------------------------


def test_forwarded_for_is_honoured_only_from_a_trusted_proxy() -> None:
    trusted = trusted_networks(("10.0.0.0/8", "2001:db8::/32"))
    forged = [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.7, 10.1.2.3")]
    assert client_address(forged, "10.0.0.5", trusted) == "198.51.100.7"  # right-most untrusted
    assert client_address(forged, "192.0.2.44", trusted) == "192.0.2.44"  # not a proxy: header ignored
    assert client_address(forged, "10.0.0.5", ()) == "10.0.0.5"  # default: trust no one
    assert client_address([(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-for", b"::ffff:198.51.100.9")],
                          "2001:db8::1", trusted) == "198.51.100.9"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that believes X-Forwarded-For from 127.0.0.1 (a reverse proxy on the same host)."""
    srv = start_server(tmp_path_factory.mktemp("proxied") / "home",
                       {"FLEXI_AUTH": "on", "FLEXI_TRUSTED_PROXIES": "127.0.0.1"})
    try:
        yield srv
    finally:
        stop_server(srv)


def _password(url: str, user: str, password: str, forwarded_for: str | None = None, lang: str = "en") -> httpx.Response:
    headers = {"Accept-Language": lang, **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}
    return httpx.post(url + "/auth/password", json={"username": user, "password": password}, headers=headers, timeout=60)


@pytest.mark.e2e
def test_guesser_behind_the_proxy_slows_only_itself_not_the_account_owner(proxied: RunningServer) -> None:
    from tests.access_helpers import ServerDB

    db = ServerDB(proxied.home)
    try:
        db.add_user("proxied-owner", password_hash=hash_password("owner's password"))
    finally:
        db.close()
    for i in range(PAIR.free):
        assert _password(proxied.url, "proxied-owner", f"guess{i}", "203.0.113.66").status_code == 401
    assert _password(proxied.url, "proxied-owner", "guess-next", "203.0.113.66").status_code == 429
    # the owner, elsewhere on campus behind the same proxy, is not held up by the guesser
    assert _password(proxied.url, "proxied-owner", "owner's password", "198.51.100.7").status_code == 200


@pytest.mark.e2e
def test_forged_forwarded_for_does_not_dodge_the_backoff_without_a_trusted_proxy(sso: Sso) -> None:
    sso.db.add_user("rotating-target", password_hash=hash_password("right one"))
    codes = [_password(sso.flexi.url, "rotating-target", f"guess{i}", f"203.0.113.{i}").status_code
             for i in range(PAIR.free + 1)]
    assert codes == [401] * PAIR.free + [429]  # one address (the real peer), however the header varies


@pytest.mark.e2e
def test_account_backoff_answers_429_with_retry_after_and_the_right_password_works_after_it(sso: Sso) -> None:
    sso.db.add_user("backoff-user", password_hash=hash_password("the right one"))
    for i in range(PAIR.free):
        assert _password(sso.flexi.url, "backoff-user", f"wrong{i}").status_code == 401
    waiting = _password(sso.flexi.url, "backoff-user", "the right one", lang="de")
    assert waiting.status_code == 429, waiting.text  # during the wait even the right password waits...
    retry = int(waiting.headers["retry-after"])
    assert 1 <= retry <= PAIR.base + 1 and "fehlgeschlagene Anmeldungen" in waiting.json()["error"]
    english = _password(sso.flexi.url, "backoff-user", "the right one")
    assert english.status_code == 429 and "too many failed sign-ins" in english.json()["error"]
    time.sleep(retry + 0.5)
    ok = _password(sso.flexi.url, "backoff-user", "the right one")  # ...and works once it is over: no lock
    assert ok.status_code == 200 and "flexi_session" in ok.cookies


def test_backoff_stays_bounded_however_long_the_guessing_goes_on() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(2000):  # a guesser that tries again the moment each wait ends, for days
        now[0] += throttle.retry_after("victim", "203.0.113.66")
        throttle.failed("victim", "203.0.113.66")
    assert throttle.retry_after("victim", "203.0.113.66") <= PAIR.cap
    assert throttle.retry_after("victim", "198.51.100.7") <= ACCOUNT.cap  # the owner elsewhere: a minute at most
    now[0] += PAIR.cap + 1
    assert throttle.retry_after("victim", "203.0.113.66") == 0  # every wait ends by itself


def test_fair_queue_tells_students_behind_a_trusted_proxy_apart() -> None:
    """auth=off keys the fair queue on the client address: behind the campus proxy every student
    once shared the proxy's one turn; a forged header from elsewhere must not buy extra turns."""
    from flexi.access.principal import Principal
    from flexi.http.caller import build_caller

    settings = load_settings(trusted_proxies="10.0.0.5")
    local = Principal(user_id=None, subject="local", pseudonym="p" * 64, role="admin", locale="en", local=True)

    def who(peer: str, forwarded_for: str) -> str:
        scope = {"type": "http", "method": "POST", "path": "/api/chat", "client": (peer, 1234),
                 "headers": [(b"x-forwarded-for", forwarded_for.encode())], "state": {}}
        return build_caller(scope, local, settings.trusted_proxies, "test").identity

    assert who("10.0.0.5", "198.51.100.7") != who("10.0.0.5", "198.51.100.8")  # two students, two turns
    assert who("10.0.0.5", "198.51.100.7") == "addr:198.51.100.7"
    assert who("192.0.2.44", "198.51.100.7") == who("192.0.2.44", "198.51.100.9") == "addr:192.0.2.44"


def test_cookies_are_secure_behind_a_trusted_tls_proxy_only() -> None:
    """Uvicorn no longer believes X-Forwarded-Proto from 127.0.0.1 on its own; a trusted proxy's still counts."""
    from starlette.requests import Request

    from flexi.http.sessions import is_secure

    settings = load_settings(trusted_proxies="127.0.0.1")

    def request(peer: str) -> Request:
        return Request({"type": "http", "method": "GET", "path": "/auth/login", "scheme": "http", "client": (peer, 1),
                        "headers": [(b"host", b"llm.uni.example"), (b"x-forwarded-proto", b"https")]})

    assert is_secure(request("127.0.0.1"), settings)
    assert not is_secure(request("192.0.2.44"), settings)


def test_sign_in_cookie_planted_from_a_sibling_subdomain_does_not_bind(sso: Sso, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Behind HTTPS the pre-auth cookie is `__Host-flexi_signin` (Path=/, Secure, no Domain), which a page on
    students.uni.example cannot set for llm.uni.example. A plain `flexi_signin` with the attacker's value,
    planted through `Domain=uni.example`, must not bind the attacker's sign-in to the victim's browser."""
    import json as _json

    port = free_port()
    flexi = start_server(tmp_path_factory.mktemp("sso-https") / "home", {
        "FLEXI_AUTH": "on", "FLEXI_OIDC_ISSUER": sso.idp, "FLEXI_OIDC_CLIENT_ID": CLIENT_ID,
        "FLEXI_OIDC_CLIENT_SECRET": CLIENT_SECRET, "FLEXI_OIDC_ROLE_CLAIM": "realm_access.roles",
        "FLEXI_OIDC_ROLE_MAP": _json.dumps({}), "SSL_CERT_FILE": sso.ca,
        "FLEXI_PUBLIC_URL": f"https://127.0.0.1:{port}"}, port=port)
    try:
        sso.to_idp("POST", sso.idp + "/_test/next", json={"claims": {"sub": "attacker"}, "misbehave": None}).raise_for_status()
        start = httpx.get(flexi.url + "/auth/login")
        assert start.status_code == 302, start.text
        set_cookie = start.headers["set-cookie"]
        assert set_cookie.startswith("__Host-flexi_signin=") and "Path=/;" in set_cookie and "Secure" in set_cookie
        secret = set_cookie.split(";", 1)[0].split("=", 1)[1]
        at_idp = sso.to_idp("GET", start.headers["location"])
        assert at_idp.status_code == 302, at_idp.text
        callback = at_idp.headers["location"].replace(f"https://127.0.0.1:{port}", flexi.url)
        planted = httpx.get(callback, headers={"cookie": f"flexi_signin={secret}"})
        assert planted.status_code == 400 and "flexi_session" not in planted.headers.get("set-cookie", "")
        own = httpx.get(callback, headers={"cookie": f"__Host-flexi_signin={secret}"})
        assert own.status_code == 302 and "flexi_session" in own.headers.get("set-cookie", "")
    finally:
        stop_server(flexi)


@pytest.mark.e2e
def test_session_cookie_planted_from_a_sibling_subdomain_is_ignored_behind_https(proxied: RunningServer) -> None:
    """Behind HTTPS the session cookie is `__Host-flexi_session`; a plain `flexi_session` (which a page on a
    sibling subdomain could set with `Domain=uni.example`, to sign a victim into the attacker's account) is
    not a credential there."""
    from tests.access_helpers import ServerDB

    db = ServerDB(proxied.home)
    try:
        db.add_user("cookie-owner", password_hash=hash_password("cookie owner's password"))
    finally:
        db.close()
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.9"}
    signed_in = httpx.post(proxied.url + "/auth/password", json={"username": "cookie-owner",
                                                                  "password": "cookie owner's password"}, headers=https)
    assert signed_in.status_code == 200, signed_in.text
    set_cookie = signed_in.headers["set-cookie"]
    assert set_cookie.startswith("__Host-flexi_session=") and "Path=/;" in set_cookie and "Secure" in set_cookie
    token = set_cookie.split(";", 1)[0].split("=", 1)[1]
    assert httpx.get(proxied.url + "/me", headers={**https, "Cookie": f"__Host-flexi_session={token}"}).status_code == 200
    assert httpx.get(proxied.url + "/me", headers={**https, "Cookie": f"flexi_session={token}"}).status_code == 401
    # on plain http (a laptop, the tests) the plain name is the one that counts
    plain = _password(proxied.url, "cookie-owner", "cookie owner's password", "198.51.100.9")
    assert plain.status_code == 200 and plain.headers["set-cookie"].startswith("flexi_session=")
