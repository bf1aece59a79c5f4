"""What the admin and self-service routers share: validation errors with the right
status, one transaction per request, and `AdminError` rendered as JSON.

Why a route class: the app renders request validation errors as 400 (the
dialects' convention), but an update payload with a field it does not accept
(`role`, another `user_id`) is a 422 here, as the admin API promises. Query
and path values that do not validate stay 400.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flexi import i18n
from flexi.access.admin_ops import AdminError
from flexi.access.errors import forbidden
from flexi.access.principal import Principal
from flexi.http.caller import caller_of
from flexi.http.app_state import access_of
from flexi.engine.types import BadRequest, EngineError

CODES = {400: "invalid_request", 403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid_request"}


def _describe(exc: RequestValidationError) -> tuple[str, bool]:
    """(message, is_body_error) for the first validation error; never echoes the input."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return "invalid JSON in request body", False
    loc = [str(p) for p in first.get("loc", ())]
    body = bool(loc) and loc[0] == "body"
    field = ".".join(p for p in loc if p not in ("body", "path", "query")) or None
    msg = first.get("msg", "invalid value")
    return (f'invalid value for "{field}": {msg}' if field else f"invalid request: {msg}"), body


class AdminRoute(APIRoute):
    """Body validation errors → 422, other validation errors → 400, both as {"error": …}."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                message, body = _describe(exc)
                if body:
                    raise EngineError(message, 422, "invalid_request") from None
                raise BadRequest(message) from None

        return route


def require_admin(request: Request) -> Principal:
    """Router dependency: the middleware already refuses non-admins on /admin; check again here."""
    principal = caller_of(request).principal
    if not principal.is_admin:
        raise forbidden(i18n.text("forbidden_admin", caller_of(request).locale))
    return principal


def http_error(exc: AdminError, locale: str = "en") -> EngineError:
    return EngineError(exc.localized(locale), exc.status, CODES.get(exc.status, "invalid_request"))


@contextmanager
def transaction(request: Request, locale: str = "en") -> Iterator[Session]:
    """One session per request, committed at the end; AdminError → JSON error response."""
    access = access_of(request)
    with access.sessions() as session:
        try:
            yield session
            session.commit()
        except AdminError as exc:
            session.rollback()
            raise http_error(exc, locale) from None
        except IntegrityError:  # a concurrent request made the same row first
            session.rollback()
            raise EngineError("a concurrent change conflicted with this one; try again", 409, "conflict") from None
