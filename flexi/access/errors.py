"""Access failures as EngineErrors, so both dialects render them in their own shape."""

from __future__ import annotations

from typing import Any

from flexi.engine.types import EngineError


class AccessError(EngineError):
    """401/403/429 with optional extra response headers and body fields."""

    def __init__(self, message: str, status: int, code: str, *, headers: dict[str, str] | None = None,
                 fields: dict[str, Any] | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.headers = headers or {}
        self.fields = fields or {}


def unauthorized(message: str) -> AccessError:
    return AccessError(message, 401, "unauthorized", headers={"WWW-Authenticate": 'Bearer realm="flexi"'})


def forbidden(message: str, code: str = "forbidden", **fields: Any) -> AccessError:
    """403; a specific `code` (terms_not_accepted, csrf_failed) also goes into Ollama-shaped bodies,
    so the web page and scripts can tell what to do without parsing the message."""
    return AccessError(message, 403, code, fields={"code": code, **fields} if code != "forbidden" else fields)


def quota_exceeded(message: str, retry_after: int, **fields: Any) -> AccessError:
    return AccessError(message, 429, "quota_exceeded", headers={"Retry-After": str(max(1, retry_after))}, fields=fields)


def too_many_requests(message: str, retry_after: int, **fields: Any) -> AccessError:
    """429 for the per-person cap on concurrent requests (the same shape as a quota refusal)."""
    return AccessError(message, 429, "too_many_requests", headers={"Retry-After": str(max(1, retry_after))},
                       fields=fields)


def shared_state_unavailable(message: str, retry_after: int) -> AccessError:
    """503 while the replicas' shared state (Redis) is unreachable and FLEXI_REDIS_FAILURE=closed."""
    return AccessError(message, 503, "shared_state_unavailable", headers={"Retry-After": str(max(1, retry_after))})
