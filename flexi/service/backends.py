"""Where a resolved request runs: the seam between the generation service and the engines.

Local models run on the local scheduler (`ModelManager`: runner processes on this machine); models
of remote engines (vLLM, Ollama, llama-server, another Flexi: `[[backends]]`, flexi/service/remote.py)
implement the same `Backend` protocol and are chosen per model by a `BackendSelector`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from flexi.engine.types import (
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    GenerationStats,
    Prefill,
    PromptLogprobs,
    StatusEvent,
    TextChunk,
    ThinkingChunk,
    ToolCalls,
)
from flexi.store.store import ModelRecord

Event = Prefill | TextChunk | PromptLogprobs | GenerationStats | StatusEvent | ToolCalls | ThinkingChunk


class Backend(Protocol):
    """Runs resolved requests for the models it serves, fairly queued."""

    def generate(self, req: GenerationRequest, record: ModelRecord | None = None) -> AsyncIterator[Event]: ...

    async def embed(self, req: EmbeddingRequest, record: ModelRecord | None = None) -> EmbeddingResult: ...

    def context_for(self, record: ModelRecord, num_ctx: int | None) -> int:
        """The context a request asking for `num_ctx` (None: the configured default) runs with."""
        ...

    def context_ceiling(self, record: ModelRecord) -> int:
        """The largest context a request may get without reloading the model beyond its configuration."""
        ...


def renders_itself(backend: Backend) -> bool:
    """Whether `backend` applies the model's chat template itself (a remote engine): then it gets the
    request's messages instead of a prompt Flexi rendered."""
    return bool(getattr(backend, "renders_itself", False))


class BackendSelector(Protocol):
    def __call__(self, record: ModelRecord) -> Backend: ...


def local_only(manager: Backend) -> BackendSelector:
    """Every model on the local scheduler (until remote backends exist)."""

    def select(record: ModelRecord) -> Backend:
        return manager

    return select
