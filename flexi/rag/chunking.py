"""Cut a parsed document into retrieval chunks along its structure, with a size limit and overlap.

Why by structure: a citation must name one document, one page or slide and one heading path, so a chunk
never spans two pages or slides, nor two sections with different headings (consecutive sections with the
same page and heading path are treated as one). Inside a section the text is cut into units that are
never split when they fit, and packed greedily up to `max_tokens`:

- a text table (lines starting with ``|``) is one unit, so a table that fits stays intact in one chunk;
  a larger table is cut between rows, repeating its header row (and ``|---|`` line) in every piece;
- prose is cut into sentences; a sentence larger than the limit into words, and a "word" larger than
  the limit (a URL, base64, text without spaces) into the longest prefixes that fit.

Overlap: a new chunk starts with the last whole units of the previous chunk of the same section that
together fit in `overlap` tokens (whole sentences, rows or words: no chunk starts mid-word); overlap
never crosses a section or page boundary.

Size: by default "tokens" are approximated without a model: every word (a run of letters and digits)
counts one token per started 6 characters and every punctuation mark one. WordPiece and BPE
vocabularies split off punctuation and cut long or rare words into pieces, so this tracks them closely
for English and errs towards more tokens for long German compounds, which keeps chunks inside the
embedding model's window (all-MiniLM-L6-v2: 256). Characters alone would mis-count short and long
words alike; plain word counts under-count German and punctuation. Pass `tokenizer` (text → token
count, without special tokens) to measure with the embedding model's own vocabulary instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from flexi.rag.document import ParsedDocument, Section

DocumentId = int | str
Tokenizer = Callable[[str], int]

DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP = 40
CHARS_PER_TOKEN = 6
MAX_CHARS_PER_TOKEN = 32  # bounds the prefix search for text without spaces, whatever the tokenizer
HEADING_SEPARATOR = " › "

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}")
_ABBREVIATIONS = frozenset({"bzw.", "vgl.", "usw.", "prof.", "evtl.", "ggf.", "inkl.", "bspw.", "abb.", "tab.", "kap.",
                            "etc.", "e.g.", "i.e.", "fig.", "vs.", "no.", "ch.", "sec.", "eq."})


def approx_tokens(text: str) -> int:
    """The default token count (see the module docstring): one per started 6 characters of a word, one per mark."""
    return sum(-(-len(t) // CHARS_PER_TOKEN) for t in _TOKEN.findall(text))


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage and where it comes from; `ordinal` is its position in the document (0-based)."""

    document_id: DocumentId
    document: str
    page: int | None
    heading_path: tuple[str, ...]
    text: str
    ordinal: int

    @property
    def heading(self) -> str:
        return HEADING_SEPARATOR.join(self.heading_path)

    @property
    def search_text(self) -> str:
        """What the indexes see: the headings add the words a section's text often leaves implicit."""
        return f"{self.heading}\n{self.text}" if self.heading_path else self.text


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    joiner: str  # put before this unit when it follows another one in a chunk


def chunk_document(document: ParsedDocument, document_id: DocumentId, name: str | None = None, *,
                   max_tokens: int = DEFAULT_MAX_TOKENS, overlap: int = DEFAULT_OVERLAP,
                   tokenizer: Tokenizer | None = None) -> list[Chunk]:
    """The chunks of `document` in reading order; `name` (default: its title) is what citations show."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be at least 0 and smaller than max_tokens")
    count = tokenizer or approx_tokens
    label = document.title if name is None else name
    chunks: list[Chunk] = []
    for page, headings, text in _groups(document.sections):
        for piece in _pack(_units(text, max_tokens, count), max_tokens, overlap):
            chunks.append(Chunk(document_id, label, page, headings, piece, len(chunks)))
    return chunks


def _groups(sections: Iterable[Section]) -> Iterator[tuple[int | None, tuple[str, ...], str]]:
    """Consecutive non-empty sections with the same page and heading path, their texts joined."""
    key: tuple[int | None, tuple[str, ...]] | None = None
    texts: list[str] = []
    for section in sections:
        text = section.text.strip()
        if not text:
            continue
        here = (section.page, tuple(h.strip() for h in section.heading_path if h.strip()))
        if here != key and texts:
            assert key is not None
            yield key[0], key[1], "\n\n".join(texts)
            texts = []
        key = here
        texts.append(text)
    if texts and key is not None:
        yield key[0], key[1], "\n\n".join(texts)


def _blocks(text: str) -> Iterator[tuple[bool, str]]:
    """(is_table, text) for each paragraph, a run of table lines counting as a paragraph of its own."""
    for paragraph in re.split(r"\n\s*\n", text):
        run: list[str] = []
        table = False
        for line in paragraph.splitlines():
            is_row = line.lstrip().startswith("|")
            if run and is_row != table:
                yield table, "\n".join(run).strip()
                run = []
            table = is_row
            if line.strip() or run:
                run.append(line)
        if run and "\n".join(run).strip():
            yield table, "\n".join(run).strip()


def _units(text: str, max_tokens: int, count: Tokenizer) -> list[_Unit]:
    units: list[_Unit] = []
    for table, block in _blocks(text):
        start = len(units)
        if table:
            units.extend(_table_units(block, max_tokens, count))
        else:
            for sentence in _sentences(block):
                units.extend(_text_units(sentence, " ", max_tokens, count))
        if len(units) > start:  # a new paragraph or table starts on its own line
            first = units[start]
            units[start] = _Unit(first.text, first.tokens, "\n\n")
    return units


def _sentences(block: str) -> list[str]:
    """Sentences of a paragraph. A fragment is glued to the next one when that starts in lower case or the
    fragment ends in what is likely an abbreviation ("z. B.", "Dr.", "vgl."; not "3.", which ends sentences
    as often as it is a German ordinal)."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(block):
        if out and (piece[:1].islower() or _abbreviation(out[-1])):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return [s for s in (p.strip() for p in out) if s]


def _abbreviation(fragment: str) -> bool:
    last = fragment.rsplit(None, 1)[-1]
    return last.endswith(".") and ((len(last) <= 3 and last[:-1].isalpha()) or last.casefold() in _ABBREVIATIONS)


def _text_units(text: str, joiner: str, max_tokens: int, count: Tokenizer) -> list[_Unit]:
    """`text` as one unit if it fits, else as its words, and a word that does not fit as prefixes that do."""
    tokens = count(text)
    if tokens <= max_tokens:
        return [_Unit(text, tokens, joiner)]
    units: list[_Unit] = []
    for i, word in enumerate(text.split()):
        sep = joiner if i == 0 else " "
        n = count(word)
        if n <= max_tokens:
            units.append(_Unit(word, n, sep))
            continue
        for j, part in enumerate(_split_word(word, max_tokens, count)):
            units.append(_Unit(part, count(part), sep if j == 0 else ""))
    return units


def _split_word(word: str, max_tokens: int, count: Tokenizer) -> Iterator[str]:
    """Longest prefixes that fit, found by galloping then bisecting, so the tokenizer only ever sees
    text about twice a piece's length (never the rest of a megabyte-long blob again and again)."""
    rest = word
    while rest:
        limit = min(len(rest), max_tokens * MAX_CHARS_PER_TOKEN)
        lo, probe = 1, max(1, max_tokens)  # lo: a length known to fit (one character always "fits")
        while probe < limit and count(rest[:probe]) <= max_tokens:
            lo, probe = probe, probe * 2
        hi = min(probe, limit)
        if hi > lo and count(rest[:hi]) <= max_tokens:
            lo = hi
        while lo < hi - 1:
            mid = (lo + hi) // 2
            if count(rest[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid
        yield rest[:lo]
        rest = rest[lo:]


def _table_units(table: str, max_tokens: int, count: Tokenizer) -> list[_Unit]:
    """The table as one unit if it fits, else pieces of whole rows under a repeated header."""
    tokens = count(table)
    if tokens <= max_tokens:
        return [_Unit(table, tokens, "\n")]
    lines = table.splitlines()
    head_len = 2 if len(lines) > 2 and _TABLE_RULE.match(lines[1]) else 1
    header, rows = lines[:head_len], lines[head_len:]
    head_tokens = count("\n".join(header))
    if head_tokens * 2 > max_tokens:  # a header that crowds out the rows is not worth repeating
        header, rows, head_tokens = [], lines, 0
    units: list[_Unit] = []
    piece: list[str] = []
    size = head_tokens
    for row in rows:
        n = count(row)
        if head_tokens + n > max_tokens:  # a row too large even alone: cut it like text
            if piece:
                units.append(_Unit("\n".join(header + piece), size, "\n"))
                piece, size = [], head_tokens
            units.extend(_text_units(row, "\n", max_tokens, count))
            continue
        if piece and size + n > max_tokens:
            units.append(_Unit("\n".join(header + piece), size, "\n"))
            piece, size = [], head_tokens
        piece.append(row)
        size += n
    if piece:
        units.append(_Unit("\n".join(header + piece), size, "\n"))
    return units


def _pack(units: list[_Unit], max_tokens: int, overlap: int) -> list[str]:
    """Greedy packing of units into chunk texts, each next chunk starting with the previous one's overlap."""
    texts: list[str] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and size + unit.tokens > max_tokens:
            texts.append(_join(current))
            current = _tail(current, min(overlap, max_tokens - unit.tokens))
            size = sum(u.tokens for u in current)
        current.append(unit)
        size += unit.tokens
    if current:
        texts.append(_join(current))
    return texts


def _tail(units: list[_Unit], budget: int) -> list[_Unit]:
    """The last whole units within `budget` tokens, never all of them (a chunk must bring something new)."""
    taken = 0
    start = len(units)
    while start > 1 and taken + units[start - 1].tokens <= budget:
        start -= 1
        taken += units[start].tokens
    return units[start:]


def _join(units: list[_Unit]) -> str:
    return units[0].text + "".join(u.joiner + u.text for u in units[1:])
