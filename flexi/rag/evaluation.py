"""Metrics of `flexi rag eval`: how well retrieval finds the passages that answer a question, and how well
an answer cites and sticks to what it was given. Pure functions, so each number can be checked by hand.

Gold: a question names the places that answer it (`GoldRef`): a document and a page (or slide), or a
document and a heading where the format has no pages (Markdown, HTML). A retrieved chunk *matches* a gold
reference when it comes from that document and, if the reference names a page, from that page; else, if it
names a heading, when that heading is one of the chunk's heading path (case-insensitive); a reference with
neither matches any chunk of its document.

- **recall@k**: share of questions with at least one matching chunk among the first k retrieved.
- **MRR@k**: mean over questions of 1 / rank of the first matching chunk in the first k (0 when none).
- **citation accuracy**: for one answer, the share of its citations ([n], mapped to the passage quoted as n)
  whose passage matches a gold reference; undefined (None) for an answer that cites nothing. Averaged
  over the answers that cite something; how many cite at all is reported next to it.
- **groundedness**: for one answer, the share of its sentences that are *supported*. A sentence is
  supported when at least `SUPPORT_THRESHOLD` (half) of its content terms also occur in the passages it
  cites (all of them together), or — when it cites nothing — in at least one quoted passage. Content terms
  are those of the lexical index's analyzer (`flexi.rag.lexical.analyze`: case-folded, function words of
  German and English dropped, light stemming), so "variances" in an answer meets "variance" in a passage.
  A sentence that cites only numbers no passage has is unsupported. Sentences with fewer than
  `MIN_TERMS` content terms ("Yes.", "See [2].") are not counted. Undefined (None) when no sentence
  counts. This is a transparent lexical proxy, not entailment: it catches answers that drift away from
  the material, not subtle misstatements made with the material's own words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from flexi.rag.lexical import analyze

SUPPORT_THRESHOLD = 0.5
MIN_TERMS = 2

_CITE = re.compile(r"\[(\d{1,3})\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


class Located(Protocol):
    """Anything with a source location; `flexi.rag.chunking.Chunk` is one."""

    @property
    def document(self) -> str: ...

    @property
    def page(self) -> int | None: ...

    @property
    def heading_path(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class GoldRef:
    """A place that answers a question: a document, and a page or a heading inside it."""

    document: str
    page: int | None = None
    heading: str | None = None


def matches(gold: GoldRef, chunk: Located) -> bool:
    """Whether `chunk` comes from the place `gold` names (the rule in the module docstring)."""
    if chunk.document != gold.document:
        return False
    if gold.page is not None:
        return chunk.page == gold.page
    if gold.heading is not None:
        wanted = gold.heading.strip().casefold()
        return any(h.strip().casefold() == wanted for h in chunk.heading_path)
    return True


def first_match_rank(retrieved: Sequence[Located], gold: Iterable[GoldRef], k: int) -> int | None:
    """The 1-based rank of the first of the top `k` chunks that matches any gold reference, or None."""
    golds = list(gold)
    for rank, chunk in enumerate(retrieved[:k], start=1):
        if any(matches(g, chunk) for g in golds):
            return rank
    return None


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose first match (`first_match_rank`) is within the top `k`."""
    if not ranks:
        return 0.0
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def mean_reciprocal_rank(ranks: Sequence[int | None], k: int) -> float:
    """Mean of 1/rank over questions, counting a question without a match in the top `k` as 0."""
    if not ranks:
        return 0.0
    return sum(1.0 / r for r in ranks if r is not None and r <= k) / len(ranks)


def cited_numbers(answer: str) -> list[int]:
    """The citation numbers [n] of an answer, in order of first mention."""
    seen: list[int] = []
    for match in _CITE.finditer(answer):
        n = int(match.group(1))
        if n not in seen:
            seen.append(n)
    return seen


def citation_accuracy(answer: str, passages: Sequence[Located], gold: Iterable[GoldRef]) -> float | None:
    """Share of the answer's citations that point to a gold place; a number that names no passage counts
    as a wrong citation. None when the answer cites nothing."""
    numbers = cited_numbers(answer)
    if not numbers:
        return None
    golds = list(gold)
    right = sum(1 for n in numbers if 1 <= n <= len(passages) and any(matches(g, passages[n - 1]) for g in golds))
    return right / len(numbers)


def sentences(answer: str) -> list[str]:
    """The answer cut at sentence ends and line breaks (list items are sentences of their own)."""
    return [s.strip() for s in _SENTENCE_END.split(answer) if s.strip()]


@dataclass(frozen=True)
class SentenceCheck:
    sentence: str
    terms: int  # content terms of the sentence
    overlap: float  # best share of them found in the supporting text
    supported: bool


def check_sentence(sentence: str, passages: Sequence[str], threshold: float = SUPPORT_THRESHOLD) -> SentenceCheck | None:
    """The sentence judged against the passages (texts, numbered from 1); None when it does not count."""
    terms = set(analyze(_CITE.sub(" ", sentence)))
    if len(terms) < MIN_TERMS:
        return None
    numbers = cited_numbers(sentence)
    if numbers:
        cited = [passages[n - 1] for n in numbers if 1 <= n <= len(passages)]
        sources = [" ".join(cited)] if cited else []
    else:
        sources = list(passages)
    overlap = max((len(terms & set(analyze(text))) / len(terms) for text in sources), default=0.0)
    return SentenceCheck(sentence, len(terms), overlap, overlap >= threshold)


def groundedness(answer: str, passages: Sequence[str], threshold: float = SUPPORT_THRESHOLD) -> float | None:
    """Share of the counted sentences of `answer` that the passages support; None when none counts."""
    checks = [c for c in (check_sentence(s, passages, threshold) for s in sentences(answer)) if c is not None]
    if not checks:
        return None
    return sum(1 for c in checks if c.supported) / len(checks)


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the defined values, None when there are none."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None
