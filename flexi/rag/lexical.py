"""Okapi BM25 over chunks, in memory, with documents added and removed while it serves.

Analysis (`analyze`): Unicode NFKC, case folding (so "Straße" and "STRASSE" meet), words as runs of
Unicode letters and digits, German and English function words dropped (`STOPWORDS`: in a small course
IDF cannot tell them from content words, and they have the longest posting lists), and a light suffix stripper shared by German and English: a trailing "s"
(not after s, u or i), then one of "en", "er", "em", "es", "e", "n", each only while a stem of at least
four characters remains. It conflates the inflections a student's question and the slides most often
differ by (Prüfung/Prüfungen, Vorlesung/Vorlesungen, lecture/lectures, Modul/Module/modules), for both
languages with one rule, so a course that mixes them needs no language detection and no dependency.
A per-language Snowball stemmer would conflate more but needs the language of every chunk and query;
no stemming at all misses most German plurals. German compounds ("Prüfungsordnung") are not split:
the dense index covers that, and splitting without a dictionary hurts precision. The analyzer can be
replaced (`LexicalIndex(analyzer=...)`) — the evaluation tool can compare.

Scoring: BM25 with Lucene's non-negative IDF, log(1 + (N - df + 0.5) / (df + 0.5)), with N, df and the
average length over all live chunks in the index (not only those the caller may see: statistics leak no
text, and per-query statistics would make scores depend on the caller).

Storage: one posting list per term as compact arrays (row, term frequency), read by numpy at query time,
so a query costs a few vector operations per query term rather than a Python loop over chunks (the
arrays are copied out, never viewed, so adding while a search runs cannot hit an exported buffer). Removing
a document only marks its rows dead and corrects the statistics; the index rebuilds itself from its
live chunks once more than half of its rows are dead.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from functools import lru_cache

import numpy as np

from flexi.rag.chunking import Chunk, DocumentId

Analyzer = Callable[[str], list[str]]

_WORD = re.compile(r"\w+")
# Function words of German and English (folded): in a course of a few hundred chunks IDF cannot tell them
# from content words ("ist" may be rarer than "Prüfung"), and they are the longest posting lists.
STOPWORDS = frozenset("""
der die das den dem des ein eine einer eines einem einen und oder aber auch als am an auf aus bei bis
da damit dann dass denn doch du er es sie ihr ich wir sich sein seine ihre ist sind war waren wird werden
wurde wurden hat haben hatte kann können muss müssen soll sollen im in ins mit nach nicht noch nur ob
so über um unter von vom vor wann was welche welcher welches wenn wer wie wo zu zum zur
a an and are as at be been by but can could do does did for from had has have how i if in into is it its
me my no not of on or our shall should so than that the their them then there these they this those to
was we were what when where which who why will with would you your
""".split())
_ENDINGS = ("en", "er", "em", "es", "e", "n")
MIN_STEM = 4
_COMPACT_MIN_DEAD = 1024


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The light German/English suffix stripper described in the module docstring (`word` already folded)."""
    if not word.isalpha():
        return word
    if word.endswith("s") and word[-2:-1] not in ("s", "u", "i") and len(word) - 1 >= MIN_STEM:
        word = word[:-1]
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= MIN_STEM:
            return word[: -len(ending)]
    return word


def analyze(text: str) -> list[str]:
    """The terms of `text`: normalised, case-folded, split into words, function words dropped, stemmed."""
    return [stem(w) for w in _WORD.findall(unicodedata.normalize("NFKC", text).casefold()) if w not in STOPWORDS]


class LexicalIndex:
    """BM25 (k1, b) over chunks' `search_text`; thread-safe; `search` filters by the documents a caller may see."""

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, analyzer: Analyzer = analyze) -> None:
        self.k1, self.b, self.analyzer = k1, b, analyzer
        self._lock = threading.RLock()
        self._reset()

    @classmethod
    def from_chunks(cls, chunks: Iterable[Chunk], **options: object) -> LexicalIndex:
        index = cls(**options)  # type: ignore[arg-type]
        index.add(chunks)
        return index

    def _reset(self) -> None:
        self._chunks: list[Chunk | None] = []  # by row; None once removed
        self._lengths = array("f")
        self._alive = bytearray()
        self._doc_code = array("i")  # by row: the document's small integer code
        self._codes: dict[DocumentId, int] = {}
        self._rows_of: dict[DocumentId, list[int]] = {}
        self._vocab: dict[str, int] = {}
        self._post_rows: list[array] = []
        self._post_tf: list[array] = []
        self._df: list[int] = []
        self._live = 0
        self._total_length = 0.0

    def __len__(self) -> int:
        return self._live

    @property
    def documents(self) -> set[DocumentId]:
        return set(self._rows_of)

    def add(self, chunks: Iterable[Chunk]) -> None:
        """Index `chunks`; a document's chunks already in the index are replaced first."""
        chunks = list(chunks)
        with self._lock:
            for document_id in {c.document_id for c in chunks}:
                self._remove(document_id)
            for chunk in chunks:
                self._add(chunk)

    def _add(self, chunk: Chunk) -> None:
        row = len(self._chunks)
        terms = Counter(self.analyzer(chunk.search_text))
        length = sum(terms.values())
        code = self._codes.setdefault(chunk.document_id, len(self._codes))
        self._chunks.append(chunk)
        self._lengths.append(length)
        self._alive.append(1)
        self._doc_code.append(code)
        self._rows_of.setdefault(chunk.document_id, []).append(row)
        for term, tf in terms.items():
            tid = self._vocab.get(term)
            if tid is None:
                tid = self._vocab[term] = len(self._df)
                self._post_rows.append(array("i"))
                self._post_tf.append(array("f"))
                self._df.append(0)
            self._post_rows[tid].append(row)
            self._post_tf[tid].append(tf)
            self._df[tid] += 1
        self._live += 1
        self._total_length += length

    def remove(self, document_id: DocumentId) -> int:
        """Forget a document's chunks; returns how many there were."""
        with self._lock:
            removed = self._remove(document_id)
            dead = len(self._chunks) - self._live
            if dead > self._live and dead >= _COMPACT_MIN_DEAD:
                live = [c for c in self._chunks if c is not None]
                self._reset()
                for chunk in live:
                    self._add(chunk)
            return removed

    def _remove(self, document_id: DocumentId) -> int:
        rows = self._rows_of.pop(document_id, [])
        for row in rows:
            chunk = self._chunks[row]
            assert chunk is not None
            for term in set(self.analyzer(chunk.search_text)):
                self._df[self._vocab[term]] -= 1
            self._alive[row] = 0
            self._chunks[row] = None
            self._live -= 1
            self._total_length -= self._lengths[row]
        return len(rows)

    def search(self, query: str, k: int, allowed_docs: Collection[DocumentId]) -> list[tuple[Chunk, float]]:
        """The `k` best chunks for `query` among the documents in `allowed_docs`, best first, with BM25 scores.

        `allowed_docs` is required: the caller's rights are applied here, never after the ranking.
        """
        if k <= 0:
            return []
        with self._lock:
            codes = [self._codes[d] for d in allowed_docs if d in self._rows_of]
            query_terms = Counter(self.analyzer(query))
            if not codes or not self._live or not query_terms:
                return []
            n_rows = len(self._chunks)
            lengths = np.frombuffer(self._lengths, dtype=np.float32, count=n_rows).copy()
            norm = self.k1 * (1.0 - self.b + self.b * lengths / np.float32(self._total_length / self._live))
            scores = np.zeros(n_rows, dtype=np.float32)
            for term, qtf in query_terms.items():
                tid = self._vocab.get(term)
                if tid is None or self._df[tid] <= 0:
                    continue
                df = self._df[tid]
                idf = math.log(1.0 + (self._live - df + 0.5) / (df + 0.5))
                rows = np.frombuffer(self._post_rows[tid], dtype=np.int32).copy()
                tf = np.frombuffer(self._post_tf[tid], dtype=np.float32).copy()
                scores[rows] += np.float32(qtf * idf * (self.k1 + 1.0)) * tf / (tf + norm[rows])
            candidates = np.flatnonzero(scores)
            alive = np.frombuffer(self._alive, dtype=np.bool_, count=n_rows).copy()
            doc_codes = np.frombuffer(self._doc_code, dtype=np.int32, count=n_rows).copy()
            candidates = candidates[alive[candidates] & np.isin(doc_codes[candidates], codes)]
            top = _top_k(scores, candidates, k)
            return [(self._chunks[r], float(scores[r])) for r in top]  # type: ignore[misc]


def _top_k(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The rows among `candidates` with the highest scores, best first (ties: earlier row first)."""
    if len(candidates) > k:
        part = np.argpartition(-scores[candidates], k - 1)[:k]
        candidates = candidates[part]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]
