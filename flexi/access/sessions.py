"""Browser sign-in sessions: a random token in an HttpOnly cookie, only its
SHA-256 in the database (a stolen database cannot be replayed as cookies),
and deleting the row signs the browser out everywhere at once."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from flexi.access.authn import session_hash
from flexi.access.credentials import SESSION_COOKIE
from flexi.config import Settings
from flexi.db.models import LoginSession, utcnow
from flexi.server.forwarded import request_scheme, trusted_networks


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
    if settings.public_url:
        return settings.public_url.startswith("https://")
    return request_scheme(request.scope, trusted_networks(tuple(settings.trusted_proxies))) == "https"


def set_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(settings.session_hours * 3600), path="/", httponly=True,
                        samesite="lax", secure=is_secure(request, settings))


def clear_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_secure(request, settings))
