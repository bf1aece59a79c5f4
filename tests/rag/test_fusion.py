"""Reciprocal rank fusion and hybrid search of the embedded default index."""

from __future__ import annotations

import numpy as np
import pytest

from flexi.rag.chunking import Chunk
from flexi.rag.fusion import HybridIndex, hybrid_search, reciprocal_rank_fusion


def test_rrf_sums_reciprocal_ranks_with_k_60() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    assert [item for item, _ in fused] == ["a", "c", "b"]
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert reciprocal_rank_fusion([]) == []
    assert [i for i, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]  # a tie keeps first seen
    assert dict(reciprocal_rank_fusion([["a"]], k=0))["a"] == 1.0


CORPUS = [
    ("course-a", 1, ("Organisation",), "Die Klausur findet am 12. Februar im Audimax statt."),
    ("course-a", 2, ("Organisation",), "Anmeldung zur Prüfung über das Campus-Portal bis Ende Januar."),
    ("course-a", 3, ("Inhalt",), "Lineare Regression schätzt Koeffizienten mit kleinsten Quadraten."),
    ("course-b", 1, ("Geheim",), "Die Klausur von Kurs B: Lösungen der Aufgaben, Februar."),
]


def build() -> tuple[list[Chunk], np.ndarray, HybridIndex]:
    chunks = [Chunk(doc, doc, page, heading, text, i) for i, (doc, page, heading, text) in enumerate(CORPUS)]
    vectors = np.eye(4, dtype=np.float32)  # chunk i points along axis i
    return chunks, vectors, HybridIndex.from_chunks(chunks, vectors)


def test_a_chunk_both_lists_rank_first_wins_and_keeps_both_ranks() -> None:
    chunks, _, index = build()
    hits = index.hybrid_search("Wann ist die Klausur?", [1, 0, 0.2, 0], 3, {"course-a"})
    first = hits[0]
    assert first.chunk == chunks[0]
    assert (first.lexical_rank, first.dense_rank) == (1, 1)
    assert first.score == pytest.approx(2 / 61)
    assert first.dense_score == pytest.approx(1 / np.hypot(1, 0.2), rel=1e-6) and first.lexical_score > 0
    # regression is found by the dense side only: a lexical rank of None
    regression = next(h for h in hits if h.chunk == chunks[2])
    assert regression.lexical_rank is None and regression.lexical_score is None and regression.dense_rank == 2
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_another_course_is_never_retrieved_whatever_matches() -> None:
    chunks, _, index = build()
    # course B's chunk is the best match in both lists, yet a course-A caller never gets it
    hits = index.hybrid_search("Klausur Lösungen Aufgaben Kurs B", [0, 0, 0, 1], 10, {"course-a"})
    assert hits and {h.chunk.document_id for h in hits} == {"course-a"}
    assert index.hybrid_search("Klausur", [0, 0, 0, 1], 10, set()) == []
    assert index.hybrid_search("Klausur", [0, 0, 0, 1], 10, ["unknown"]) == []
    both = index.hybrid_search("Klausur Lösungen Aufgaben Kurs B", [0, 0, 0, 1], 1, {"course-a", "course-b"})
    assert both[0].chunk == chunks[3]


def test_without_a_query_vector_it_is_bm25_alone() -> None:
    chunks, _, index = build()
    hits = index.hybrid_search("Anmeldung Prüfung", None, 5, {"course-a"})
    assert [h.chunk for h in hits] == [chunks[1]]
    assert hits[0].dense_rank is None and hits[0].lexical_rank == 1
    assert hybrid_search(index.lexical, None, "Anmeldung", [1, 0, 0, 0], 5, {"course-a"})[0].chunk == chunks[1]


def test_k_limits_and_candidates() -> None:
    rng = np.random.default_rng(0)
    chunks = [Chunk("d", "d", i, (), f"Thema {i} Klausur", i) for i in range(200)]
    index = HybridIndex.from_chunks(chunks, rng.normal(size=(200, 8)))
    hits = index.hybrid_search("Klausur", rng.normal(size=8), 7, {"d"}, candidates=20)
    assert len(hits) == 7
    assert index.hybrid_search("Klausur", rng.normal(size=8), 0, {"d"}) == []
    assert len(index.hybrid_search("Klausur", rng.normal(size=8), 100, {"d"}, candidates=10)) >= 100  # depth ≥ k


def test_add_remove_and_rebuild_agree() -> None:
    chunks, vectors, index = build()
    assert index.remove("course-b") == 1
    assert len(index) == 3 and index.dense.documents == index.lexical.documents == {"course-a"}
    hits = index.hybrid_search("Lösungen", [0, 0, 0, 1], 5, {"course-a", "course-b"})
    assert hits and all(h.chunk.document_id == "course-a" and h.lexical_rank is None for h in hits)
    with pytest.raises(ValueError):  # a bad vector changes neither index
        index.add(chunks[3:], [[1.0, 2.0]])
    assert len(index) == 3 and len(index.dense) == 3
    index.add(chunks[3:], vectors[3:])
    rebuilt = HybridIndex.from_chunks(chunks, vectors)
    for query, qv in (("Klausur Februar", [0.5, 0, 0, 0.5]), ("Regression", [0, 0, 1, 0])):
        allowed = {"course-a", "course-b"}
        assert index.hybrid_search(query, qv, 4, allowed) == rebuilt.hybrid_search(query, qv, 4, allowed)
