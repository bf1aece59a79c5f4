"""Authentication and endpoint rules for every request, as one pure-ASGI middleware.

One place decides for every route of both dialects (and for docs, metrics and
admin routes alike): no route can forget a check. Public: `/auth/…` (sign-in
itself), `/terms` (what one is asked to accept), `/lti/…` (LTI launches carry their own signed
tokens, checked by flexi.campus.lti) and the web interface's shell:
`GET /` asked for as HTML, `/ui/assets/…`, `/ui/config` (no data in them; the
page signs in by itself).

Endpoint classes:
- `/admin/…` and `/metrics` (Prometheus): admins only (role admin; a key needs scope `admin` if it has scopes);
- model management (`pull`, `create`, `delete`, `copy`, `push`, blob upload): admins only (scope `manage`);
- `/me…`: a signed-in user (not the anonymous local user of auth=off);
- everything else: scope `inference`.
Exporting, erasing or re-keying one's own account needs a browser sign-in or a
key with scope `account` (a leaked inference key must not do that).
A request with no credential at all to the inference API of either dialect
(`/api/…`, `/v1/…`) from an address FLEXI_KEYLESS_CLIENTS names acts as the
service account (or key) it is mapped to (Moodle's Ollama provider before 5.0.7
and 5.1.4 sends none); the address is the client's behind FLEXI_TRUSTED_PROXIES.
A browser user who has not accepted the current terms of use gets 403 with a
link, except on the routes needed to read and accept them.
A request signed in by cookie that changes something must carry the session's
CSRF token (`X-Flexi-CSRF`, see flexi.http.csrf): browsers send cookies also on
requests other pages trigger.
"""

from __future__ import annotations

import time

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flexi import i18n
from flexi.access.credentials import CredentialError, extract
from flexi.access.errors import AccessError, forbidden, unauthorized
from flexi.access.caller import Caller
from flexi.access.principal import Principal
from flexi.observability.metrics import Metrics
from flexi.http.sessions import scope_is_secure
from flexi.http.errors import error_renderer
from flexi.http.caller import CALLER_STATE, build_caller, request_id_of
from flexi.http.csrf import CSRF_HEADER, SAFE_METHODS, csrf_ok
from flexi.http.forwarded import client_address_of
from flexi.http.negotiate import wants_html

CSRF_HEADER_BYTES = CSRF_HEADER.encode()

PUBLIC_PREFIXES = ("/auth/", "/ui/assets/", "/lti/")  # /lti/: each route checks its own token (flexi.campus.lti)
PUBLIC_PATHS = {"/terms", "/ui/config", "/favicon.ico"}
ADMIN_PATHS = {"/metrics"}  # operators' view of the whole service (every model and course)
MANAGE_PATHS = {"/api/pull", "/api/create", "/api/delete", "/api/copy", "/api/push"}
MANAGE_PREFIXES = ("/api/blobs/",)
TERMS_EXEMPT = {"/me", "/me/terms", "/me/export"}
KEYLESS_PREFIXES = ("/api/", "/v1/")  # the two dialects' inference routes: what a key-less client may reach


def account_action(method: str, path: str) -> bool:
    """Routes that act on the account itself: export, erasure, key management."""
    return path == "/me/export" or (method not in ("GET", "HEAD") and (path == "/me" or path.startswith("/me/keys")))


def endpoint_class(path: str, method: str = "GET", accept: str | None = None) -> str:
    if path.startswith(PUBLIC_PREFIXES) or path in PUBLIC_PATHS:
        return "public"
    if path == "/" and method in ("GET", "HEAD") and wants_html(accept):
        return "public"  # the web page signs in by itself; API clients probing `/` still need a key
    if path == "/admin" or path.startswith("/admin/") or path in ADMIN_PATHS:
        return "admin"
    if path in MANAGE_PATHS or path.startswith(MANAGE_PREFIXES):
        return "manage"
    if path == "/me" or path.startswith("/me/"):
        return "me"
    return "inference"


class AccessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # websockets: none are served; refuse rather than skip the checks
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        t0 = time.perf_counter()
        request_id = request_id_of(scope)
        path: str = scope["path"]
        kind = endpoint_class(path, scope["method"], next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None) if path == "/" else None)
        metrics = getattr(getattr(scope["app"].state, "flexi", None), "metrics", None)
        if metrics is not None:  # every answer, refusals here included, by endpoint class and status class
            send = _counted(send, metrics, kind)
        try:
            principal = await self._principal(scope, kind)
        except AccessError as exc:
            response = error_renderer(scope["path"])(exc)
            response.headers["x-request-id"] = request_id
            await response(scope, receive, send)
            return
        caller: Caller | None = None
        if principal is not None:
            caller = build_caller(scope, principal, scope["app"].state.flexi.settings.trusted_proxies, request_id)
            caller.timings.auth_ms = (time.perf_counter() - t0) * 1000
            scope.setdefault("state", {})[CALLER_STATE] = caller
        auth_ms = (time.perf_counter() - t0) * 1000

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                # what access control cost this request (W3C Server-Timing: browsers' dev tools and
                # benchmarks read it): authentication here, policy + quota admission in the gate
                timing = f"auth;dur={auth_ms:.3f}"
                if caller is not None and caller.timings.gate_ms is not None:
                    timing += f", gate;dur={caller.timings.gate_ms:.3f}"
                if caller is not None and caller.timings.retrieve_ms is not None:
                    timing += f", retrieve;dur={caller.timings.retrieve_ms:.3f}"
                headers = message.setdefault("headers", [])
                headers.append((b"server-timing", timing.encode()))
                headers.append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_timing)

    async def _principal(self, scope: Scope, kind: str) -> Principal | None:
        access = scope["app"].state.flexi.access
        path: str = scope["path"]
        headers = scope["headers"]
        locale_hint = next((v.decode("latin-1") for k, v in headers if k == b"accept-language"), None)
        if kind == "public":
            return None
        if access.settings.auth == "off":
            principal = access.authn.local_principal()
        else:
            locale = i18n.request_locale(locale_hint, access.settings.default_locale)
            cookie = next((v.decode("latin-1") for k, v in headers if k == b"cookie"), None)
            try:
                credential = extract(headers, cookie, scope_is_secure(scope, access.settings))
            except CredentialError:
                raise unauthorized(i18n.text("invalid_credentials", locale)) from None
            if credential is None:
                principal = await self._keyless(scope, access, kind)
                if principal is None:
                    raise unauthorized(i18n.text("unauthorized", locale))
            elif access.authn.reads_inline:
                principal = access.authn.authenticate(credential)
            else:
                principal = await anyio.to_thread.run_sync(access.authn.authenticate, credential)
            if principal is None:
                raise unauthorized(i18n.text("invalid_credentials", locale))
            if credential is not None and credential.kind == "session" and scope["method"] not in SAFE_METHODS and not csrf_ok(
                    credential.value, next((v.decode("latin-1") for k, v in headers if k == CSRF_HEADER_BYTES), None)):
                raise forbidden(i18n.text("csrf", locale), code="csrf_failed")
        self._check(access, principal, kind, i18n.request_locale(locale_hint, principal.locale), scope["method"], path)
        version = access.settings.terms_version
        if principal.session and version and path not in TERMS_EXEMPT and not (
                access.authn.accepted_terms(principal.user_id, version) if access.authn.reads_inline
                else await anyio.to_thread.run_sync(access.authn.accepted_terms, principal.user_id, version)):
            url = access.settings.terms_url
            text = i18n.text("terms", i18n.request_locale(locale_hint, principal.locale), version=version, url=url)
            raise forbidden(text, code="terms_not_accepted", terms_url=url, terms_version=version)
        return principal

    async def _keyless(self, scope: Scope, access, kind: str) -> Principal | None:  # type: ignore[no-untyped-def]
        """The service account a credential-less inference request from a FLEXI_KEYLESS_CLIENTS address acts as."""
        settings = access.settings
        if not settings.keyless_clients or kind != "inference" or not scope["path"].startswith(KEYLESS_PREFIXES):
            return None
        address = client_address_of(scope, settings.trusted_proxies)
        if access.authn.reads_inline:
            return access.authn.keyless(address)  # type: ignore[no-any-return]
        return await anyio.to_thread.run_sync(access.authn.keyless, address)  # type: ignore[no-any-return]

    def _check(self, access, principal: Principal, kind: str, locale: str, method: str = "GET",  # type: ignore[no-untyped-def]
               path: str = "") -> None:
        if kind == "admin" and not principal.is_admin:
            raise forbidden(i18n.text("forbidden_admin", locale))
        if kind == "manage":
            if principal.role != "admin":
                raise forbidden(i18n.text("forbidden_admin", locale))
            if not principal.has_scope("manage"):
                raise forbidden(i18n.text("forbidden_scope", locale, scope="manage"))
        if kind == "me" and principal.user_id is None:
            raise forbidden("there is no signed-in user: authentication is off (FLEXI_AUTH=off)")
        if kind == "me" and account_action(method, path) and not principal.session and not principal.has_scope("account"):
            # a leaked inference key must not export, erase or re-key its owner's account
            raise forbidden(i18n.text("forbidden_scope", locale, scope="account"))
        if kind == "inference" and not principal.has_scope("inference"):
            raise forbidden(i18n.text("forbidden_scope", locale, scope="inference"))


def _counted(send: Send, metrics: Metrics, kind: str) -> Send:
    """`send`, counting the response's status for /metrics when it starts."""

    async def counting(message: Message) -> None:
        if message["type"] == "http.response.start":
            metrics.response(kind, message["status"])
        await send(message)

    return counting
