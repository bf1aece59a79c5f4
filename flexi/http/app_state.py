"""How a route reaches what the app holds for its lifetime (`AppState`, made in the lifespan).

The one home for these two look-ups; every router (dialects, campus, admin, web page) uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from flexi.engine.types import EngineError

if TYPE_CHECKING:
    from flexi.access.service import AccessService
    from flexi.service.generation import GenerationService
    from flexi.service.state import AppState


def state_of(request: HTTPConnection) -> AppState:
    """The app's `AppState`: settings, model store, manager and access layer."""
    return request.app.state.flexi  # type: ignore[no-any-return]


def access_of(request: HTTPConnection) -> AccessService:
    """The app's AccessService. An app built without one (a bug, never a client's fault) is
    answered with a clean 503 instead of an AttributeError's 500 and trace."""
    access = getattr(getattr(request.app.state, "flexi", None), "access", None)
    if access is None:
        raise EngineError("the access layer is not configured", 503, "unavailable")
    return access  # type: ignore[no-any-return]


def generation_of(request: HTTPConnection) -> GenerationService:
    """The app's generation service (every generation and embedding goes through it)."""
    return request.app.state.flexi.generation  # type: ignore[no-any-return]
