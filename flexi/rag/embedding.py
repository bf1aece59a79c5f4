"""How the course-document code gets vectors, without knowing where they come from.

The server passes an `Embedder` backed by Flexi's own engine (`flexi.service.embedder`): the same
runners, fair queue and model store as chat, so an operator runs one system. Tests and the evaluation
tool pass any object with the same two members. Texts are embedded in batches (`embed_batches`) so a
long script neither holds one runner for minutes nor sends one huge request, and progress can be shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

BATCH = 32  # texts per request: large enough to fill the runner's batch, small enough to interleave with chat


class Embedder(Protocol):
    @property
    def model(self) -> str | None:
        """The embedding model's name, or None when there is none (then search is lexical only)."""
        ...

    async def embed(self, texts: Sequence[str], *, user: str, purpose: str) -> np.ndarray:
        """One float32 row per text; `purpose` is "passage" or "query" (models such as e5 prefix them)."""
        ...


def to_bytes(vector: np.ndarray) -> bytes:
    """A vector as the database stores it: float32 little-endian."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


async def embed_batches(embedder: Embedder, texts: Sequence[str], *, user: str,
                        progress: Callable[[int, int], None] | None = None, batch: int = BATCH) -> np.ndarray:
    """All `texts` as passages, `batch` at a time; `progress(done, total)` after each batch."""
    rows: list[np.ndarray] = []
    for start in range(0, len(texts), batch):
        rows.append(np.asarray(await embedder.embed(texts[start:start + batch], user=user, purpose="passage"),
                               dtype=np.float32))
        if progress is not None:
            progress(min(start + batch, len(texts)), len(texts))
    return np.vstack(rows) if rows else np.empty((0, 0), np.float32)
