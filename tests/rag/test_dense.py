"""The in-memory dense index: exact cosine ranking, filtering by documents, add/remove, bad vectors."""

from __future__ import annotations

import numpy as np
import pytest

from flexi.rag.chunking import Chunk
from flexi.rag.dense import DenseIndex


def chunks_for(doc: int | str, n: int) -> list[Chunk]:
    return [Chunk(doc, f"doc-{doc}", i + 1, (), f"text {doc}/{i}", i) for i in range(n)]


def reference(vectors: np.ndarray, query: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
    v = vectors[rows] / np.linalg.norm(vectors[rows], axis=1, keepdims=True)
    sims = v @ (query / np.linalg.norm(query))
    return [int(rows[i]) for i in np.argsort(-sims, kind="stable")[:k]]


@pytest.mark.parametrize("allowed_docs", [{0, 1, 2, 3, 4}, {0, 1, 2, 3}, {2}, {4, 99}])  # whole matrix and subset paths
def test_ranks_like_brute_force_over_the_allowed_documents(allowed_docs: set[int]) -> None:
    rng = np.random.default_rng(1)
    chunks = [c for d in range(5) for c in chunks_for(d, 300)]  # 1,500 rows: grows past the first capacity
    vectors = rng.normal(size=(len(chunks), 16)).astype(np.float32)
    index = DenseIndex.from_chunks(chunks, vectors)
    assert len(index) == 1500
    doc_of = np.array([c.document_id for c in chunks])
    rows = np.flatnonzero(np.isin(doc_of, list(allowed_docs)))
    for _ in range(5):
        query = rng.normal(size=16)
        hits = index.search(query, 10, allowed_docs)
        assert [chunks.index(c) for c, _ in hits] == reference(vectors, query, rows, 10)
        assert all(c.document_id in allowed_docs for c, _ in hits)
        sims = [s for _, s in hits]
        assert sims == sorted(sims, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in sims)


def test_cosine_ignores_vector_length() -> None:
    chunks = chunks_for("a", 3)
    index = DenseIndex.from_chunks(chunks, [[1, 0], [0, 1], [1, 1]])
    hits = index.search([10, 0.1], 3, {"a"})
    assert [c.ordinal for c, _ in hits] == [0, 2, 1]
    assert hits[0][1] == pytest.approx(10 / np.hypot(10, 0.1), rel=1e-6)
    assert index.search([100, 1], 1, {"a"})[0][0] == index.search([1, 0.01], 1, {"a"})[0][0]


def test_filters_and_edge_cases() -> None:
    index = DenseIndex.from_chunks(chunks_for("a", 2) + chunks_for("b", 2), np.eye(4, dtype=np.float32))
    assert index.search([0, 0, 1, 0], 5, {"a"})[0][1] == 0.0  # b's chunk matches exactly, but a may not see b
    assert {c.document_id for c, _ in index.search([0, 0, 1, 0], 5, {"a"})} == {"a"}
    assert index.search([1, 0, 0, 0], 5, set()) == []
    assert index.search([1, 0, 0, 0], 0, {"a"}) == []
    assert index.search([0, 0, 0, 0], 5, {"a"}) == []  # a zero query has no direction
    with pytest.raises(ValueError):
        index.search([1, 0, 0], 5, {"a"})
    empty = DenseIndex(4)
    assert empty.search([1, 0, 0, 0], 5, {"a"}) == []


def test_bad_vectors_are_refused_and_change_nothing() -> None:
    index = DenseIndex.from_chunks(chunks_for("a", 2), np.eye(2))
    with pytest.raises(ValueError):
        index.add(chunks_for("b", 2), np.ones((3, 2)))
    with pytest.raises(ValueError):
        index.add(chunks_for("b", 2), np.ones((2, 3)))
    with pytest.raises(ValueError):
        index.add(chunks_for("a", 2), [[np.nan, 1], [1, 1]])
    assert len(index) == 2 and index.documents == {"a"}
    with pytest.raises(ValueError):
        DenseIndex(0)


def test_from_chunks_without_chunks_needs_a_dimension() -> None:
    assert len(DenseIndex.from_chunks([], np.empty((0, 8)))) == 0
    assert DenseIndex.from_chunks([], [], dim=8).dim == 8
    with pytest.raises(ValueError):
        DenseIndex.from_chunks([], [])


def test_re_adding_replaces_and_remove_deletes_the_vectors() -> None:
    index = DenseIndex.from_chunks(chunks_for("a", 2) + chunks_for("b", 1), np.eye(3))
    index.add(chunks_for("a", 1), [[0, 1, 0]])
    assert len(index) == 2
    # a's old vectors are gone: nothing points along the first axis any more (a tie at 0, earlier row first)
    assert [(c.document_id, c.ordinal) for c, _ in index.search([1, 0, 0], 5, {"a", "b"})] == [("b", 0), ("a", 0)]
    assert index.search([1, 0, 0], 5, {"a", "b"})[0][1] == pytest.approx(0.0)
    assert index.remove("b") == 1
    assert index.remove("b") == 0
    assert not index._matrix[2].any()  # the removed vector is zeroed, not only hidden
    assert [c.document_id for c, _ in index.search([0, 0, 1], 5, {"a", "b"})] == ["a"]


def test_compaction_keeps_the_rest_searchable() -> None:
    rng = np.random.default_rng(3)
    chunks = [c for d in range(3) for c in chunks_for(d, 700)]
    vectors = rng.normal(size=(2100, 8)).astype(np.float32)
    index = DenseIndex.from_chunks(chunks, vectors)
    index.remove(0)
    index.remove(1)  # 1,400 of 2,100 rows dead: compacted
    assert len(index._chunks) == 700 and len(index) == 700
    query = rng.normal(size=8)
    hits = index.search(query, 5, {0, 1, 2})
    assert [chunks.index(c) for c, _ in hits] == reference(vectors, query, np.arange(1400, 2100), 5)
    index.add(chunks_for(0, 1), [query])
    assert index.search(query, 1, {0, 2})[0][0].document_id == 0
