"""The runner of `flexi rag eval`: index a question set's documents in several configurations and measure.

Axes: chunk size (tokens, see `flexi.rag.chunking`), retrieval mode (lexical BM25, dense, hybrid RRF) and
embedding model. Each set's documents are parsed once in the sandbox like an upload; for each chunk size
they are chunked and, for each embedding model, embedded once; then every mode searches the same index
(lexical rows do not depend on the model and are computed once per chunk size). There is no reranker
stage in Flexi yet, so there is no reranker axis.

The runner knows no HTTP: embeddings come from an `Embed` callable per model name, answers from a `Chat`
callable (the CLI passes ones that call a Flexi server). With `chat`, the first `answer_limit` questions of
each hybrid configuration are answered from their top-k passages, prompted exactly as a course assistant
does (`flexi.rag.grounding.with_passages`), and scored for citation accuracy and groundedness.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from flexi.rag.chunking import DEFAULT_OVERLAP, Chunk, chunk_document
from flexi.rag.dense import DenseIndex
from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.evalcorpus import EvalSet, Question
from flexi.rag.evaluation import (
    citation_accuracy,
    first_match_rank,
    groundedness,
    mean,
    mean_reciprocal_rank,
    recall_at_k,
)
from flexi.rag.fusion import DEFAULT_CANDIDATES, RRF_K, hybrid_search
from flexi.rag.grounding import Passage, with_passages
from flexi.rag.lexical import LexicalIndex
from flexi.rag.sandbox import ParseLimits, parse_document

Embed = Callable[[list[str]], list[list[float]]]
Chat = Callable[[list[dict[str, Any]]], str]
Progress = Callable[..., None]  # (message key in flexi.i18n.rag_eval, **values)

MODES = ("lexical", "dense", "hybrid")


@dataclass
class ConfigResult:
    """One row of the report: a set under one configuration."""

    set: str
    chunk_tokens: int
    mode: str
    embedding_model: str | None  # None for lexical
    questions: int
    chunks: int
    k: int
    recall: float
    mrr: float
    recall_at_1: float
    search_ms_p50: float
    ranks: dict[str, int | None] = field(default_factory=dict)  # question id → first match rank (≤ k) or None
    answers: int = 0
    answers_citing: int = 0
    citation_accuracy: float | None = None
    groundedness: float | None = None
    answer_details: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Settings:
    k: int = 5
    chunk_sizes: tuple[int, ...] = (100, 200)
    modes: tuple[str, ...] = MODES
    candidates: int = DEFAULT_CANDIDATES
    rrf_k: int = RRF_K
    answer_limit: int | None = None


def overlap_for(chunk_tokens: int) -> int:
    """The chunker's default overlap, scaled down for small chunks (a fifth of the size at most)."""
    return min(DEFAULT_OVERLAP, chunk_tokens // 5)


class DocumentFailed(Exception):
    """A document of the set could not be parsed: the evaluation needs all of them."""

    def __init__(self, name: str, error: ParseError) -> None:
        super().__init__(f"{name}: {error}")
        self.name, self.error = name, error


def parse_set(eval_set: EvalSet, limits: ParseLimits | None = None) -> list[tuple[str, ParsedDocument]]:
    """Every document of the set parsed in the sandbox, as an upload would be."""
    limits = limits or ParseLimits()
    parsed = []
    for name, data in eval_set.documents:
        try:
            parsed.append((name, parse_document(data, name, limits)))
        except ParseError as exc:
            raise DocumentFailed(name, exc) from exc
    return parsed


def chunk_set(parsed: Sequence[tuple[str, ParsedDocument]], chunk_tokens: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for i, (name, document) in enumerate(parsed):
        chunks += chunk_document(document, i, name, max_tokens=chunk_tokens, overlap=overlap_for(chunk_tokens))
    return chunks


def _vectors(embed: Embed, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.empty((0, 1), np.float32)
    vectors = np.asarray(embed(texts), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"the embedder returned {vectors.shape} for {len(texts)} texts")
    return vectors


def evaluate(sets: Sequence[EvalSet], embedders: dict[str, Embed], settings: Settings = Settings(),
             chat: Chat | None = None, progress: Progress = lambda _key, **_values: None,
             limits: ParseLimits | None = None) -> list[ConfigResult]:
    """Every configuration for every set; rows in the order set, chunk size, mode, model."""
    for mode in settings.modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
    if any(m != "lexical" for m in settings.modes) and not embedders:
        raise ValueError("dense and hybrid retrieval need an embedding model")
    results: list[ConfigResult] = []
    for eval_set in sets:
        progress("rag_eval_parsing", set=eval_set.name, documents=len(eval_set.documents))
        parsed = parse_set(eval_set, limits)
        questions = [q.question for q in eval_set.questions]
        for size in settings.chunk_sizes:
            chunks = chunk_set(parsed, size)
            lexical = LexicalIndex.from_chunks(chunks)
            docs = {c.document_id for c in chunks}
            needs_vectors = any(m != "lexical" for m in settings.modes)
            for model, embed in (embedders.items() if needs_vectors else []):
                progress("rag_eval_embedding", set=eval_set.name, tokens=size, model=model, chunks=len(chunks),
                         questions=len(questions))
                chunk_vectors = _vectors(embed, [c.search_text for c in chunks])
                query_vectors = _vectors(embed, questions)
                dense = DenseIndex.from_chunks(chunks, chunk_vectors)
                for mode in settings.modes:
                    if mode == "lexical":
                        continue
                    search = functools.partial(_search, mode, lexical, dense, query_vectors, docs, settings)
                    results.append(_run(eval_set, size, mode, model, len(chunks), settings, chat, progress, search))
            if "lexical" in settings.modes:
                search = functools.partial(_search, "lexical", lexical, None, None, docs, settings)
                results.append(_run(eval_set, size, "lexical", None, len(chunks), settings, chat, progress, search))
    order = {m: i for i, m in enumerate(MODES)}
    return sorted(results, key=lambda r: ([s.name for s in sets].index(r.set), r.chunk_tokens, order[r.mode],
                                          r.embedding_model or ""))


def _search(mode: str, lexical: LexicalIndex, dense: DenseIndex | None, query_vectors: np.ndarray | None,
            docs: set[Any], settings: Settings, query: str, i: int) -> list[Chunk]:
    """The top k chunks for question `query` (number `i`, the row of its vector) in one mode."""
    if mode == "lexical":
        return [c for c, _ in lexical.search(query, settings.k, docs)]
    assert dense is not None and query_vectors is not None
    vector = query_vectors[i]
    if mode == "dense":
        return [c for c, _ in dense.search(vector, settings.k, docs)]
    hits = hybrid_search(lexical, dense, query, vector, settings.k, docs, candidates=settings.candidates,
                         rrf_k=settings.rrf_k)
    return [h.chunk for h in hits]


def _run(eval_set: EvalSet, size: int, mode: str, model: str | None, n_chunks: int, settings: Settings,
         chat: Chat | None, progress: Progress, search: Callable[[str, int], list[Chunk]]) -> ConfigResult:
    k = settings.k
    ranks: dict[str, int | None] = {}
    retrieved: list[list[Chunk]] = []
    times: list[float] = []
    for i, q in enumerate(eval_set.questions):
        start = time.perf_counter()
        top = search(q.question, i)
        times.append((time.perf_counter() - start) * 1000)
        retrieved.append(top)
        ranks[q.id] = first_match_rank(top, q.gold, k)
    values = list(ranks.values())
    row = ConfigResult(eval_set.name, size, mode, model, len(values), n_chunks, k, recall_at_k(values, k),
                       mean_reciprocal_rank(values, k), recall_at_k(values, 1), float(np.median(times)) if times else 0.0,
                       ranks)
    if chat is not None and mode == "hybrid":
        n = len(retrieved) if settings.answer_limit is None else min(len(retrieved), settings.answer_limit)
        progress("rag_eval_answering", set=eval_set.name, tokens=size, model=model, questions=n)
        _answer(row, eval_set, retrieved, chat, settings.answer_limit)
    return row


def _answer(row: ConfigResult, eval_set: EvalSet, retrieved: list[list[Chunk]], chat: Chat, limit: int | None) -> None:
    accuracies: list[float | None] = []
    grounded: list[float | None] = []
    pairs = list(zip(eval_set.questions, retrieved))[: limit if limit is not None else None]
    for question, chunks in pairs:
        passages = [Passage(int(c.document_id), c.document, c.page, c.heading, c.text) for c in chunks]
        messages = with_passages([{"role": "user", "content": question.question}], passages, eval_set.language)
        answer = chat(messages)
        accuracy = citation_accuracy(answer, chunks, question.gold)
        ground = groundedness(answer, [c.text for c in chunks])
        accuracies.append(accuracy)
        grounded.append(ground)
        row.answer_details.append({"id": question.id, "answer": answer, "citation_accuracy": accuracy,
                                   "groundedness": ground})
    row.answers = len(pairs)
    row.answers_citing = sum(1 for a in accuracies if a is not None)
    row.citation_accuracy = mean(accuracies)
    row.groundedness = mean(grounded)


def combined(results: Sequence[ConfigResult], name: str = "all") -> list[ConfigResult]:
    """Rows over all sets together (question-weighted), one per configuration, when there are several sets."""
    keyed: dict[tuple[int, str, str | None], list[ConfigResult]] = {}
    for r in results:
        keyed.setdefault((r.chunk_tokens, r.mode, r.embedding_model), []).append(r)
    out = []
    for (size, mode, model), rows in keyed.items():
        if len(rows) < 2:
            continue
        ranks = {f"{r.set}/{qid}": rank for r in rows for qid, rank in r.ranks.items()}
        values, k = list(ranks.values()), rows[0].k
        merged = ConfigResult(name, size, mode, model, len(values), sum(r.chunks for r in rows), k,
                              recall_at_k(values, k), mean_reciprocal_rank(values, k), recall_at_k(values, 1),
                              float(np.median([r.search_ms_p50 for r in rows])), ranks)
        if any(r.answers for r in rows):
            merged.answers = sum(r.answers for r in rows)
            merged.answers_citing = sum(r.answers_citing for r in rows)
            details = [d for r in rows for d in r.answer_details]
            merged.citation_accuracy = mean(d["citation_accuracy"] for d in details)
            merged.groundedness = mean(d["groundedness"] for d in details)
        out.append(merged)
    return out


def limited(eval_set: EvalSet, limit: int | None) -> EvalSet:
    """The set with only its first `limit` questions (all documents stay: they are the haystack)."""
    if limit is None:
        return eval_set
    return EvalSet(eval_set.name, eval_set.language, eval_set.documents, eval_set.questions[:limit])


__all__ = ["MODES", "Chat", "ConfigResult", "DocumentFailed", "Embed", "Question", "Settings", "combined", "evaluate", "limited"]
