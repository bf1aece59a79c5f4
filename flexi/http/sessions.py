"""Browser sign-in sessions: a random token in an HttpOnly cookie, only its
SHA-256 in the database (a stolen database cannot be replayed as cookies),
and deleting the row signs the browser out everywhere at once."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from flexi.access.authn import session_hash
from flexi.access.credentials import lti_session_cookie_name, session_cookie_name
from flexi.config import Settings
from flexi.db.models import LoginSession, utcnow
from flexi.http.forwarded import request_scheme, trusted_networks


def create_session(session: Session, user_id: int, settings: Settings, method: str) -> str:
    """A new sign-in for `user_id`; returns the token for the cookie (the only copy)."""
    token = secrets.token_urlsafe(32)
    session.add(LoginSession(token_hash=session_hash(token), user_id=user_id, method=method,
                             expires_at=utcnow() + timedelta(hours=settings.session_hours)))
    session.flush()
    return token


def end_session(session: Session, token: str) -> bool:
    return bool(session.execute(delete(LoginSession).where(LoginSession.token_hash == session_hash(token))).rowcount)


def end_all_sessions(session: Session, user_id: int) -> int:
    return int(session.execute(delete(LoginSession).where(LoginSession.user_id == user_id)).rowcount or 0)


def is_secure(request: Request, settings: Settings) -> bool:
    return scope_is_secure(request.scope, settings)


def scope_is_secure(scope: Any, settings: Settings) -> bool:
    """Whether browsers reach this request over HTTPS (FLEXI_PUBLIC_URL, else the scheme seen through a
    trusted proxy): cookies are then Secure and carry the __Host- prefix."""
    if settings.public_url:
        return settings.public_url.startswith("https://")
    return request_scheme(scope, trusted_networks(tuple(settings.trusted_proxies))) == "https"


def set_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    secure = is_secure(request, settings)
    response.set_cookie(session_cookie_name(secure), token, max_age=int(settings.session_hours * 3600), path="/",
                        httponly=True, samesite="lax", secure=secure)


def clear_cookie(response: Response, request: Request, settings: Settings) -> None:
    secure = is_secure(request, settings)
    response.delete_cookie(session_cookie_name(secure), path="/", httponly=True, samesite="lax", secure=secure)


def third_party_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    """A cookie that reaches Flexi inside an LTI platform's iframe: SameSite=None needs Secure (browsers treat
    http://localhost as secure, so development works); Partitioned keeps it to that platform's frames."""
    # written by hand: Starlette's `partitioned` needs Python 3.14's http.cookies (values are URL-safe tokens)
    response.headers.append("set-cookie", f"{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=None; "
                                          "Secure; Partitioned")


def clear_lti_cookie(response: Response, request: Request, settings: Settings) -> None:
    """Sign-out in the LTI shell: the LTI session cookie goes (same attributes, or the browser keeps it)."""
    third_party_cookie(response, lti_session_cookie_name(is_secure(request, settings)), "", 0)
