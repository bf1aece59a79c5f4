"""The HTTP side of the `Caller`: built from the ASGI scope by the access middleware, read by routes.

The one place that turns headers into caller facts (language, fair-queue identity, priority,
course, request id); everything below the routes receives the `Caller` as an argument.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from flexi.access.caller import Caller, fairness_identity, priority_header_value
from flexi.access.credentials import CredentialError, extract
from flexi.i18n import request_locale
from flexi.access.principal import Principal
from flexi.engine.types import EngineError
from flexi.http.forwarded import client_address_of

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.types import Scope

CALLER_STATE = "caller"
COURSE_HEADER = b"x-flexi-course"
PRIORITY_HEADER = b"x-flexi-priority"
REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), decoded as HTTP/1.1 does (latin-1)."""
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-ID when it is a short plain token (so logs can join a proxy's lines),
    else a new random one."""
    given = header(scope, REQUEST_ID_HEADER)
    return given if given is not None and _SAFE_ID.fullmatch(given) else secrets.token_hex(8)


def bearer_of(scope: Scope) -> str | None:
    """The API key the request carries, read by the access layer's one parser (Bearer, Basic, x-api-key,
    api-key), so one key is one client whichever header carries it. A malformed or conflicting header
    counts as no key here: with auth=off nothing refuses it, and fairness must not start to (with auth on
    the middleware has already answered it with 401). Session cookies are not keys: a browser is its address."""
    try:
        credential = extract(scope["headers"])
    except CredentialError:
        return None
    return credential.value if credential is not None else None


def build_caller(scope: Scope, principal: Principal, trusted_proxies: tuple[str, ...] | list[str],
                 request_id: str) -> Caller:
    """The `Caller` of an authenticated request (called once, by the access middleware)."""
    if principal.user_id is not None:
        identity = fairness_identity(principal, None, "")
    else:  # auth=off: whoever the client says it is by key, else its real address
        identity = fairness_identity(principal, bearer_of(scope), client_address_of(scope, trusted_proxies))
    course = (header(scope, COURSE_HEADER) or "").strip() or None
    return Caller(principal=principal, locale=request_locale(header(scope, b"accept-language"), principal.locale),
                  identity=identity, endpoint=scope["path"], request_id=request_id, course=course,
                  priority_header=priority_header_value(header(scope, PRIORITY_HEADER)))


def caller_of(request: HTTPConnection) -> Caller:
    """The caller the access middleware resolved for this request.

    The middleware resolves one on every route that is not public (with auth=off the local user),
    and refuses the request itself (401/403) when it cannot. So a route that finds none is a server
    bug - a public path asking for it, or an app built without the middleware - not a client that
    failed to sign in: it is refused with a 500 that names the bug, never served and never answered
    with a misleading "please sign in"."""
    caller = request.scope.get("state", {}).get(CALLER_STATE)
    if caller is None:
        raise EngineError("no caller on this route", 500)
    return caller  # type: ignore[no-any-return]


def request_address(request: HTTPConnection) -> str:
    """The client's real address (behind FLEXI_TRUSTED_PROXIES, not the proxy's)."""
    app = request.scope.get("app")  # absent outside a running app (unit tests build bare requests)
    settings = getattr(getattr(getattr(app, "state", None), "flexi", None), "settings", None)
    return client_address_of(request.scope, settings.trusted_proxies if settings is not None else ())
