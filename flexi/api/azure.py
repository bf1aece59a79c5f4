"""Azure OpenAI's deployment routes, translated to the OpenAI routes (Moodle's aiprovider_azureai and the
Azure modes of local_ai_manager and local_aiquestions use them unchanged).

    POST /openai/deployments/{deployment}/chat/completions?api-version=…   → /v1/chat/completions
    POST /openai/deployments/{deployment}/completions?api-version=…        → /v1/completions
    POST /openai/deployments/{deployment}/embeddings?api-version=…         → /v1/embeddings
    POST /openai/deployments/{deployment}/images/generations?api-version=… → a clear refusal

The deployment names the model: a model or a model alias (`gpt-4o`), which beats a `model` in the body,
as at Azure. The key comes in the `api-key` header (the access middleware reads it like every other
credential form). Errors have Azure's shape (`flexi.http.errors.azure_error`); a deployment the caller
may not use is Azure's `DeploymentNotFound`, exactly like a missing one.

api-version: required, as at Azure (missing → 404 "Resource not found", Azure's answer). Any well-formed
version (`YYYY-MM-DD` or `YYYY-MM-DD-preview`) is accepted and answered alike, since the wire format of
these three operations has not changed between versions in a way Flexi's answers depend on; a malformed
one is a 400 like Azure's "API version not supported".
"""

from __future__ import annotations

import dataclasses
import re

from fastapi import APIRouter, Request, Response
from starlette.convertors import Convertor, register_url_convertor

from flexi import i18n
from flexi.api import openai
from flexi.api.openai_types import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingsRequest,
)
from flexi.engine.types import BadRequest, EngineError, ModelNotFound
from flexi.http.caller import CALLER_STATE, caller_of
from flexi.http.errors import parse_body


class _AnyPath(Convertor[str]):
    """Like Starlette's `path`, but also across control characters (its `.*` stops at a newline, so a
    deployment with an encoded `%0A` would miss the route and get a bare 404 instead of the 400 it deserves)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("flexi_anypath", _AnyPath())
router = APIRouter()

PREFIX = "/openai/deployments/"
#: what a deployment may look like: a model or alias name without host or namespace (no path characters)
DEPLOYMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}")
API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
OPERATIONS = ("chat/completions", "completions", "embeddings", "images/generations")


def _split(rest: str) -> tuple[str, str]:
    """`{deployment}/{operation}` → (deployment, operation). The path arrives percent-decoded, so an
    encoded `%2F` is a `/` here and makes the deployment invalid, never another route."""
    for operation in OPERATIONS:  # longest first where one ends another ("chat/completions" before "completions")
        if rest.endswith("/" + operation):
            return rest[: -len(operation) - 1], operation
    raise EngineError("Resource not found", 404, "404")


def _deployment(request: Request, name: str) -> str:
    if not DEPLOYMENT.fullmatch(name) or ".." in name:
        shown = repr(name[:80].encode("unicode_escape").decode("ascii"))
        raise BadRequest(i18n.text("azure_bad_deployment", caller_of(request).locale, name=shown), param="deployment")
    return name


def _api_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if version is None:
        raise EngineError("Resource not found: the api-version query parameter is missing "
                          "(Azure OpenAI requires it, e.g. ?api-version=2024-06-01)", 404, "404")
    if not API_VERSION.fullmatch(version):
        raise EngineError(f"API version not supported: {version[:40]!r} (expected YYYY-MM-DD or YYYY-MM-DD-preview)",
                          400, "BadRequest")


def _not_found(request: Request, name: str) -> EngineError:
    return EngineError(i18n.text("azure_no_deployment", caller_of(request).locale, name=repr(name)), 404,
                       "DeploymentNotFound")


def _name_route(request: Request, operation: str) -> None:
    """Usage records and metrics name the route, not the path: the deployment is the client's choice (unbounded
    label values, longer than the usage record's endpoint column); the model column says what ran."""
    caller = caller_of(request)
    route = f"/openai/deployments/{{deployment}}/{operation}"
    request.scope["state"][CALLER_STATE] = dataclasses.replace(caller, endpoint=route)


@router.post("/openai/deployments/{rest:flexi_anypath}", include_in_schema=True,
             summary="Azure OpenAI: chat/completions, completions, embeddings of a deployment (= model or alias)")
async def deployment_operation(request: Request, rest: str) -> Response:
    deployment, operation = _split(rest)
    deployment = _deployment(request, deployment)
    _api_version(request)
    _name_route(request, operation)
    try:
        if operation == "chat/completions":
            chat = await parse_body(request, ChatCompletionRequest)
            return await openai.chat_completion_response(request, chat.model_copy(update={"model": deployment}))
        if operation == "completions":
            text = await parse_body(request, CompletionRequest)
            return await openai.completion_response(request, text.model_copy(update={"model": deployment}))
        if operation == "embeddings":
            embed = await parse_body(request, EmbeddingsRequest)
            return await openai.embeddings_response(request, embed.model_copy(update={"model": deployment}))
        raise openai.images_not_supported(request)
    except ModelNotFound as exc:
        if exc.name != deployment:
            raise
        raise _not_found(request, deployment) from None
