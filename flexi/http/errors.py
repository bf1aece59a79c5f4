"""Error bodies in each dialect's shape, and request-body parsing with clear messages.

Ollama: {"error": "message"}. OpenAI: {"error": {"message", "type", "param", "code"}}. Azure OpenAI
(/openai/deployments/…): {"error": {"code", "message"}}.
Never a stack trace: unexpected exceptions become a generic 500 and are logged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from flexi.engine.types import BadRequest, EngineError, ServerBusy, TooManyRequests

M = TypeVar("M", bound=BaseModel)

OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
                503: "server_error", 500: "server_error"}


def _headers(exc: EngineError) -> dict[str, str] | None:
    headers = dict(getattr(exc, "headers", None) or {})
    if isinstance(exc, (ServerBusy, TooManyRequests)):
        headers["Retry-After"] = str(exc.retry_after)
    return headers or None


def ollama_error(exc: EngineError) -> JSONResponse:
    body = {"error": exc.message, **(getattr(exc, "fields", None) or {})}
    return JSONResponse(body, status_code=exc.status, headers=_headers(exc))


def openai_error(exc: EngineError) -> JSONResponse:
    body = {"error": {"message": exc.message, "type": OPENAI_TYPES.get(exc.status, "server_error"),
                      "param": getattr(exc, "param", None), "code": exc.code, **(getattr(exc, "fields", None) or {})}}
    return JSONResponse(body, status_code=exc.status, headers=_headers(exc))


#: Azure OpenAI's codes where they differ from the internal ones (its 401, 404 and 429 carry the status as text)
AZURE_CODES = {401: "401", 404: "404", 429: "429"}
AZURE_PREFIX = "/openai/"


def azure_error(exc: EngineError) -> JSONResponse:
    """Azure OpenAI's shape: `{"error": {"code", "message"}}` (SDKs and Moodle read these two); request errors
    keep OpenAI's `type` and `param` as Azure's own 400s do. Retry-After goes with 429 and 503."""
    error: dict[str, Any] = {"code": exc.code if exc.code[:1].isupper() else AZURE_CODES.get(exc.status, exc.code),
                             "message": exc.message}
    if exc.status == 400:
        error.update(type=OPENAI_TYPES[400], param=getattr(exc, "param", None))
    error.update(getattr(exc, "fields", None) or {})
    return JSONResponse({"error": error}, status_code=exc.status, headers=_headers(exc))


def error_renderer(path: str) -> Callable[[EngineError], JSONResponse]:
    """Each dialect's error shape, by the path the client called."""
    if path.startswith("/v1/"):
        return openai_error
    if path.startswith(AZURE_PREFIX):
        return azure_error
    return ollama_error


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "bytes"}


def _is_type_tag(part: object) -> bool:
    """Pydantic puts the union member's type into error locations ("format.str"); people want "format"."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part)


def describe_validation_error(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__" and not _is_type_tag(p)) or None
    msg = first.get("msg", "invalid value")
    if field:
        return f'invalid value for "{field}": {msg}', field
    return f"invalid request: {msg}", None


def _no_constant(name: str) -> Any:
    """JSON has no NaN or Infinity (RFC 8259 §6); Python's parser would accept them and pass them on."""
    raise ValueError(f"{name} is not a valid JSON number (RFC 8259 allows only finite numbers)")


def _finite_float(text: str) -> float:
    """1e999 is valid JSON but overflows to infinity: refuse it like an Infinity literal."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a number")
    return value


async def parse_body(request: Request, model: type[M]) -> M:
    """Read and validate a JSON body; malformed JSON or wrong types → BadRequest naming the field."""
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("missing request body")
    try:
        data: Any = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    except RecursionError:
        raise BadRequest("invalid JSON in request body: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, field = describe_validation_error(exc)
        raise BadRequest(message, param=field) from None
