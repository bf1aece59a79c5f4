"""Security headers for the web interface's pages and assets.

A strict Content-Security-Policy: scripts, styles, fonts and images only from
this server, no inline script, no framing, no plugins. Model output is rendered
into these pages, so even a sanitizer bypass must not be able to load or send
anything elsewhere.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
       "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]
ALWAYS = [(b"x-content-type-options", b"nosniff")]


def _is_page(path: str) -> bool:
    return path in ("/", "/docs") or path.startswith(("/ui/", "/lti/")) or path.startswith("/admin/usage/chart")


class SecurityHeaders:
    """Adds the CSP and friends to pages and assets; `nosniff` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = PAGE_HEADERS if _is_page(scope["path"]) else ALWAYS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                if b"content-security-policy" in present:
                    # a page with its own CSP (the LTI pages: frame-ancestors names the launching platform)
                    # must not be denied framing by X-Frame-Options, which cannot name an origin
                    present.add(b"x-frame-options")
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(k, v) for k, v in extra if k not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)
