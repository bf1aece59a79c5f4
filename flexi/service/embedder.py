"""Course-document embeddings through Flexi's own engine (the `flexi.rag.embedding.Embedder` the server uses).

Vectors come from the same runners, fair queue and model store as chat: an operator runs one system, and
an embedding model is installed, listed and unloaded like any other. Ingestion is internal work, not a
caller's request: it bypasses the access gate (no quota, no model policy — a student may search a course
whose embedding model they could not call directly), runs in the fair queue under its own name at batch
priority so people's chats go first, and the query of a chat is embedded under the asking person's name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flexi.engine.types import EmbeddingRequest, EngineError
from flexi.service.generation import GenerationService
from flexi.store.bundled import DEFAULT_EMBED_MODEL_NAME

BATCH_PRIORITY, PERSON_PRIORITY = 1, 0


class EngineEmbedder:
    def __init__(self, generation: GenerationService) -> None:
        self.generation = generation
        settings = generation.settings
        self.name = settings.rag_embedding_model or (DEFAULT_EMBED_MODEL_NAME if settings.default_embedding_model else "")
        self.prefixes = {"query": settings.rag_query_prefix, "passage": settings.rag_passage_prefix}

    @property
    def model(self) -> str | None:
        """The configured embedding model's stored name, or None when there is none (not installed, or off)."""
        if not self.name:
            return None
        try:
            return self.generation.store.get(self.name).name
        except EngineError:
            return None

    async def embed(self, texts: Sequence[str], *, user: str, purpose: str) -> np.ndarray:
        record = self.generation.store.get(self.name)
        prefix = self.prefixes.get(purpose, "")
        req = EmbeddingRequest(model=record.name, inputs=[prefix + t for t in texts], truncate=True, normalize=True,
                               user=user, priority=BATCH_PRIORITY if purpose == "passage" else PERSON_PRIORITY)
        result = await self.generation.backends(record).embed(req, record)
        return np.asarray(result.embeddings, dtype=np.float32)
