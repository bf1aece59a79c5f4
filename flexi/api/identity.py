"""Who is asking and how urgent it is: the keys of the fair queue.

With authentication on, a client is its user (every key and session of one
person share one turn). With auth=off, a client is identified by the bearer token
it sends (hashed, never stored) or else its address. An application's own end-user
id (OpenAI's `user`) subdivides either, so a Moodle server relaying many students
is not one user.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request

from flexi.access.credentials import CredentialError, extract
from flexi.server.forwarded import client_address_of

PRIORITIES = {"interactive": 0, "batch": 1}
PRIORITY_HEADER = "x-flexi-priority"


def client_identity(request: Request, end_user: str | None = None) -> str:
    principal = getattr(request.state, "principal", None)
    if principal is not None and principal.user_id is not None:
        who = f"user:{principal.user_id}"  # an authenticated person, whichever key or session they use
        if end_user and principal.role == "service":  # only integrations relaying many people may split their turn
            who += "/user:" + hashlib.sha256(end_user.encode()).hexdigest()[:16]
        return who
    token = _key_of(request)
    if token:
        who = "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    else:
        who = "addr:" + request_address(request)
    if end_user:
        who += "/user:" + hashlib.sha256(end_user.encode()).hexdigest()[:16]
    return who


def _key_of(request: Request) -> str | None:
    """The API key the request carries, read by the access layer's one parser (Bearer, Basic, x-api-key,
    api-key), so one key is one client whichever header carries it. A malformed or conflicting header
    counts as no key here: with auth=off nothing refuses it, and fairness must not start to (the middleware
    answers it with 401 when auth is on). Session cookies are not keys: a browser is its address."""
    try:
        credential = extract(request.headers.raw)
    except CredentialError:
        return None
    return credential.value if credential is not None else None


def request_address(request: Request) -> str:
    """The client's real address (behind FLEXI_TRUSTED_PROXIES, not the proxy's)."""
    app = request.scope.get("app")  # absent outside a running app (unit tests build bare requests)
    settings = getattr(getattr(getattr(app, "state", None), "flexi", None), "settings", None)
    return client_address_of(request.scope, settings.trusted_proxies if settings is not None else ())


def priority_of(request: Request, body_priority: int | None = None) -> int:
    """0 = interactive (default), 1 = batch: from `X-Flexi-Priority`, a numeric body field (vLLM's
    `priority`), else by role (the `service` role is batch)."""
    header = request.headers.get(PRIORITY_HEADER, "").strip().lower()
    if header in PRIORITIES:
        return PRIORITIES[header]
    if body_priority is not None:
        return 0 if body_priority <= 0 else 1
    principal = getattr(request.state, "principal", None)
    if principal is not None and principal.role == "service":
        return 1  # service accounts (batch scripts, integrations) yield to people by default
    return 0
