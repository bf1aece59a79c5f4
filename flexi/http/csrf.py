"""CSRF tokens for cookie sign-ins.

A browser that is signed in sends its session cookie with every request, also
with requests a foreign page triggers. Cookie-authenticated requests that change
something must therefore carry `X-Flexi-CSRF`, a value derived from the session
token: a foreign page can neither read the cookie nor this header's value.
(SameSite=Lax and the Origin check in the request guard are the outer walls.)
API keys are not sent automatically by browsers and need no token.
"""

from __future__ import annotations

import hashlib
import hmac

CSRF_HEADER = "x-flexi-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(session_token: str) -> str:
    return hashlib.sha256(b"flexi-csrf\x00" + session_token.encode("utf-8")).hexdigest()[:43]


def csrf_ok(session_token: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(session_token), presented.strip())
