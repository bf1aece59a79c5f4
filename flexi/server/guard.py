"""Request guards as one pure-ASGI middleware (cheap, streaming-safe).

- Host check against DNS rebinding (CVE-2024-28224) when bound to loopback; the host of
  FLEXI_PUBLIC_URL is allowed too (a proxy in front passes the public name on).
- Origin check and CORS headers (browser pages from other sites get 403). The server's own
  origin always passes: the origin of FLEXI_PUBLIC_URL and the origin the request itself
  addressed (scheme and Host, or X-Forwarded-Proto/-Host from a trusted proxy), because
  browsers send `Origin` on same-origin POSTs too.
- Body size limit: 413 before the app reads more than allowed (blob uploads exempt).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flexi.config import Settings
from flexi.rag.library import MAX_FILES_PER_UPLOAD
from flexi.http.forwarded import origin_of_url, request_origin, trusted_networks

_DEFAULT_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "[::1]")
_DEFAULT_ORIGIN_SCHEMES = ("app://", "file://", "tauri://", "vscode-webview://", "vscode-file://")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0", ""}
_UNLIMITED_PREFIXES = ("/api/blobs/",)
_DOCUMENT_UPLOADS = re.compile(r"^/assistants/[^/]{1,64}/documents$")
# An LTI platform's pages post the login initiation and the launch to Flexi from their own origin (forms, not
# scripts: no CORS answer is given). They carry no ambient credential; the signed id_token and the
# browser-bound state are checked by flexi.campus.lti.
_LTI_ENTRY_POINTS = frozenset({"/lti/login", "/lti/launch"})



class BodyTooLarge(Exception):
    pass


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host_header: str, settings: Settings) -> bool:
    if not settings.is_loopback:
        return True
    name = _host_name(host_header)
    if name in _LOOPBACK_HOSTS or name.endswith((".localhost", ".local", ".internal")):
        return True
    if name.strip("[]") == settings.bind_host.lower().strip("[]"):
        return True  # the address it listens on (127.0.0.2, ::1): an address literal cannot be rebound
    public = origin_of_url(settings.public_url)
    if public is not None and name == _host_name(public.split("://", 1)[1]):
        return True
    return name in {h.lower() for h in settings.allowed_hosts}


def origin_allowed(origin: str, settings: Settings, own_origin: str | None = None) -> bool:
    """Whether a browser page from `origin` may call this server. `own_origin` is the origin the
    request addressed (see `forwarded.request_origin`): a page of the server itself."""
    origin = origin.strip()
    own = {o for o in (own_origin, origin_of_url(settings.public_url)) if o}
    if (origin_of_url(origin) or origin.lower()) in own:
        return True
    if origin in settings.origins or "*" in settings.origins:
        return True
    if origin.startswith(_DEFAULT_ORIGIN_SCHEMES):
        return True
    for pattern in settings.origins:
        if "*" in pattern and re.fullmatch(re.escape(pattern).replace(r"\*", "[^/]*"), origin):
            return True
    m = re.fullmatch(r"(https?)://([^/]+)", origin)
    if not m:
        return False
    return _host_name(m.group(2)) in _DEFAULT_ORIGIN_HOSTS or _host_name(m.group(2)) == "[::1]"


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not host_allowed(headers.get("host", ""), self.settings):
            await _send_json(send, 403, {"error": "host not allowed: requests must use localhost or a configured host name (FLEXI_ALLOWED_HOSTS)"})
            return
        cors: list[tuple[bytes, bytes]] = []
        origin = headers.get("origin")
        if origin and scope["path"] not in _LTI_ENTRY_POINTS:
            own = request_origin(scope, trusted_networks(tuple(self.settings.trusted_proxies)))
            if not origin_allowed(origin, self.settings, own):
                await _send_json(send, 403, {"error": f"origin not allowed: {origin} (add it to FLEXI_ORIGINS)"})
                return
            # No allow-credentials: Flexi has no cookie sessions yet, and a wildcard must never be credentialed.
            cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                allow_headers = headers.get("access-control-request-headers", "authorization,content-type")
                await send({"type": "http.response.start", "status": 204, "headers": cors + [
                    (b"access-control-allow-methods", b"GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"),
                    (b"access-control-allow-headers", allow_headers.encode("latin-1")),
                    (b"access-control-max-age", b"43200")]})
                await send({"type": "http.response.body", "body": b""})
                return
        limit = None if scope["path"].startswith(_UNLIMITED_PREFIXES) else self.settings.max_request_bytes
        if _DOCUMENT_UPLOADS.match(scope["path"]):  # multipart uploads of course documents
            limit = max(limit or 0, self.settings.rag_max_upload_bytes * MAX_FILES_PER_UPLOAD + 1024**2)
        if limit is not None:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await _send_json(send, 413, self._too_large(scope, limit), cors)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        async def send_with_cors(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if cors:
                    message = {**message, "headers": list(message.get("headers", [])) + cors}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_cors)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, self._too_large(scope, limit or 0), cors)

    @staticmethod
    def _too_large(scope: Scope, limit: int) -> dict[str, Any]:
        message = f"request body too large: the limit is {limit} bytes (FLEXI_MAX_REQUEST_BYTES)"
        if scope["path"].startswith(("/v1/", "/openai/")):  # OpenAI's shape; Azure's clients read the same code + message
            return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"}}
        return {"error": message}
