"""Sign-in routes (public: the middleware lets `/auth/…` through without credentials).

- `GET /auth/providers`: which sign-in methods this server offers;
- `GET /auth/login` → the OIDC provider, `GET /auth/callback` ← back from it;
- `POST /auth/password`: local accounts (small installs without SSO);
- `POST /auth/logout`.
A successful sign-in sets the `flexi_session` cookie (HttpOnly, SameSite=Lax,
Secure over HTTPS). `/auth/login` first sets the short-lived pre-auth cookie
`flexi_signin` that binds the sign-in to this browser (see flexi.access.oidc).
Nobody becomes admin by signing in first: admins come from FLEXI_ADMINS, the
CLI or an explicitly mapped role claim. Password guessing is slowed down per
account and address (flexi.access.throttle; across replicas in Redis with
FLEXI_REDIS_URL, flexi.access.shared_state), never locked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from flexi import i18n
from flexi.access.credentials import lti_only, session_token
from flexi.access.oidc import PENDING_SECONDS, Identity, OidcClient, OidcError, new_browser_secret
from flexi.access.passwords import hash_password, verify_password
from flexi.http.sessions import clear_cookie, clear_lti_cookie, create_session, end_session, is_secure, set_cookie
from flexi.access.shared_state import SharedStateUnavailable
from flexi.http.app_state import access_of
from flexi.http.caller import request_address
from flexi.campus.admin_common import AdminRoute
from flexi.db.models import Group, GroupMember, User
from flexi.db.pseudonym import pseudonymize
from flexi.http.forwarded import address_key, request_origin, trusted_networks
from flexi.http.csrf import CSRF_HEADER, csrf_ok, csrf_token
from flexi.http.locale import locale_of

router = APIRouter(prefix="/auth", tags=["auth"], route_class=AdminRoute)

SIGNIN_COOKIE = "flexi_signin"  # pre-auth: binds an OIDC sign-in to the browser that started it
# Behind HTTPS the cookie carries the __Host- prefix: browsers then refuse it from a sibling subdomain
# (`Domain=uni.example` set by students.uni.example), so nobody can plant their own binding in a victim's
# browser and make the victim finish the attacker's sign-in (login CSRF). Plain http (a laptop) cannot have it.
SECURE_SIGNIN_COOKIE = "__Host-" + SIGNIN_COOKIE
_DUMMY_HASH = hash_password("not-a-real-password-0")  # equal work whether or not the user exists


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _locale(request: Request) -> str:
    return locale_of(request, default=access_of(request).settings.default_locale)


def _oidc(request: Request) -> OidcClient:
    state = request.app.state
    client = getattr(state, "oidc_client", None)
    if client is None:
        client = OidcClient(access_of(request).settings)
        state.oidc_client = client
    return client


def base_url(request: Request) -> str:
    settings = access_of(request).settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    own = request_origin(request.scope, trusted_networks(tuple(settings.trusted_proxies)))
    return (own or str(request.base_url).rstrip("/")) + request.scope.get("root_path", "").rstrip("/")


def _auth_path(base_url: str) -> str:
    """Cookie path of the sign-in routes as the browser sees them (FLEXI_PUBLIC_URL may have a path)."""
    return urlsplit(base_url).path.rstrip("/") + "/auth/"


@router.get("/providers", summary="Sign-in methods offered by this server")
def providers(request: Request) -> dict[str, Any]:
    settings = access_of(request).settings
    return {"auth": settings.auth, "oidc": bool(settings.oidc_issuer and settings.oidc_client_id),
            "password": True, "login_url": "/auth/login" if settings.oidc_issuer else None}


@router.get("/login", summary="Start single sign-on (redirects to the OIDC provider)")
async def login(request: Request, next: str | None = None) -> Response:
    settings = access_of(request).settings
    secure = is_secure(request, settings)
    browser_secret = new_browser_secret(_signin_cookie(request, secure))
    base = base_url(request)
    try:
        url = await _oidc(request).login_url(base + "/auth/callback", next,
                                             address_key(request_address(request)), browser_secret)
    except OidcError as exc:
        return _error(exc.message, exc.status)
    response = RedirectResponse(url, status_code=302)
    # Lax: sent on the provider's top-level redirect back to /auth/callback, not on other sites' subrequests
    response.set_cookie(SECURE_SIGNIN_COOKIE if secure else SIGNIN_COOKIE, browser_secret, max_age=PENDING_SECONDS,
                        path="/" if secure else _auth_path(base), httponly=True, samesite="lax", secure=secure)
    return response


def _signin_cookie(request: Request, secure: bool) -> str | None:
    """The browser's pre-auth cookie; behind HTTPS only the __Host- one counts (a plain one may be planted)."""
    return request.cookies.get(SECURE_SIGNIN_COOKIE if secure else SIGNIN_COOKIE)


@router.get("/callback", summary="Return from the OIDC provider")
async def callback(request: Request, state: str | None = None, code: str | None = None,
                   error: str | None = None) -> Response:
    if error:
        return _error(f"the sign-in provider reported: {error[:200]}", 401)
    try:
        secure = is_secure(request, access_of(request).settings)
        identity, next_path = await _oidc(request).finish(state, code, _signin_cookie(request, secure))
    except OidcError as exc:
        return _error(exc.message, exc.status)
    access = access_of(request)
    with access.sessions() as s:
        user, demoted = upsert_user(s, identity, access)
        token = create_session(s, user.id, access.settings, "oidc")
        s.commit()
        user_id = user.id
    access.authn.forget(user_id)
    if demoted:
        access.gate.end_streams(user_id=user_id)
    response = RedirectResponse(next_path, status_code=302)
    set_cookie(response, request, access.settings, token)
    if is_secure(request, access.settings):
        response.delete_cookie(SECURE_SIGNIN_COOKIE, path="/", httponly=True, samesite="lax", secure=True)
    else:
        response.delete_cookie(SIGNIN_COOKIE, path=_auth_path(base_url(request)), httponly=True, samesite="lax")
    return response


def upsert_user(s: Session, identity: Identity, access: Any) -> tuple[User, bool]:
    """Find or create the user of `identity`, update profile, role and groups; (user, role changed)."""
    user = s.scalar(select(User).where(User.subject == identity.subject))
    changed = False
    if user is None:
        user = User(subject=identity.subject, pseudonym=pseudonymize(identity.subject, access.pseudonym_key),
                    role=identity.role or access.settings.oidc_default_role)
        s.add(user)
    elif identity.role is not None and identity.role != user.role:
        user.role, changed = identity.role, True
    user.display_name = identity.name or user.display_name
    user.email = identity.email or user.email
    s.flush()
    s.execute(delete(GroupMember).where(GroupMember.user_id == user.id))
    for name in identity.groups:
        group = s.scalar(select(Group).where(Group.name == name))
        if group is None:
            group = Group(name=name)
            s.add(group)
            s.flush()
        s.add(GroupMember(group_id=group.id, user_id=user.id))
    s.flush()
    return user, changed


class PasswordLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(default="", max_length=255)
    password: str = Field(default="", max_length=1024)


@router.post("/password", summary="Sign in with a local account (user name and password)")
def password_login(request: Request, body: PasswordLogin) -> Response:
    try:
        return _password_login(request, body)
    except SharedStateUnavailable as exc:  # the throttle's buckets live in Redis and it is gone (fail closed)
        retry = exc.retry_after
        return _error(i18n.text("login_unavailable", _locale(request), retry=retry), 503, {"Retry-After": str(retry)})


def _password_login(request: Request, body: PasswordLogin) -> Response:
    access = access_of(request)
    throttle = access.throttle  # in memory, or shared by the replicas in Redis (FLEXI_REDIS_URL)
    locale = _locale(request)
    address = address_key(request_address(request))  # the real client behind FLEXI_TRUSTED_PROXIES
    if retry := throttle.retry_after(body.username, address):
        return _error(i18n.text("login_throttled", locale, retry=retry), 429, {"Retry-After": str(retry)})
    with access.engine.connect() as conn:  # read only: no write lock is held while scrypt runs
        user = conn.execute(select(User.id, User.subject, User.display_name, User.role, User.locale, User.password_hash,
                                   User.disabled_at).where(User.subject == body.username)).first() if body.username else None
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH  # same work either way
    ok = verify_password(body.password, stored)
    if user is None or not ok or user.disabled_at is not None or not user.password_hash:
        throttle.failed(body.username, address)
        return _error(i18n.text("login_failed", locale), 401)
    throttle.succeeded(body.username, address)
    with access.sessions() as s:
        token = create_session(s, user.id, access.settings, "password")
        s.commit()
    role = access.authn.effective_role(user.subject, user.role)
    out = {"user": {"id": user.id, "subject": user.subject, "display_name": user.display_name, "role": role,
                    "locale": user.locale}, "csrf_token": csrf_token(token)}
    response = JSONResponse(out)
    set_cookie(response, request, access.settings, token)
    return response


@router.post("/logout", status_code=204, summary="Sign out (ends this browser's session)")
def logout(request: Request) -> Response:
    access = access_of(request)
    shell = lti_only(request.headers.raw)  # the LTI shell ends its LTI session, never the first-party one
    token = session_token(request.headers.get("cookie"), is_secure(request, access.settings), shell)
    if token and not csrf_ok(token, request.headers.get(CSRF_HEADER)):
        # /auth/ is public, so the middleware's CSRF check does not run here: a same-site page
        # (SameSite=Lax sends the cookie) must not be able to sign people out.
        return JSONResponse({"error": i18n.text("csrf", _locale(request)), "code": "csrf_failed"}, status_code=403)
    if token:
        with access.sessions() as s:
            end_session(s, token)
            s.commit()
    response = Response(status_code=204)
    if shell:
        clear_lti_cookie(response, request, access.settings)
    else:
        clear_cookie(response, request, access.settings)
    return response
