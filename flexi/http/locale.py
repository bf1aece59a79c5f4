"""The language of a message to an HTTP caller: one rule for every router and the access gate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flexi.i18n import request_locale

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from flexi.access.principal import Principal


def locale_of(request: HTTPConnection, principal: Principal | None = None, default: str = "en") -> str:
    """Accept-Language (de/en) first, else the principal's stored locale, else `default` (callers
    without a principal, e.g. sign-in routes, pass FLEXI_DEFAULT_LOCALE)."""
    fallback = principal.locale if principal is not None else default
    return request_locale(request.headers.get("accept-language"), fallback)
