"""Helpers every format shares: collecting text into sections by heading and page, and text tables.

A loader walks its format in reading order and reports headings, page changes, paragraphs and tables to
a `SectionBuilder`; the builder starts a new section whenever the heading path or the page changes, so
each section can be cited as "document, page, heading" without the chunker knowing the format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from flexi.rag.document import Section

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean(text: str) -> str:
    """Collapse runs of spaces, drop trailing spaces and runs of blank lines (keeps paragraph breaks)."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as a Markdown-style text table; the first row is the header.

    Cells lose their line breaks (a cell's paragraphs are joined by " / ") and "|" is escaped, so a table
    stays one readable block that a chunk can quote and a model can read column by column.
    """
    cleaned = [[_cell(c) for c in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    if not cleaned:
        return ""
    width = max(len(row) for row in cleaned)
    cleaned = [row + [""] * (width - len(row)) for row in cleaned]
    lines = ["| " + " | ".join(cleaned[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cleaned[1:]]
    return "\n".join(lines)


def _cell(value: str) -> str:
    parts = [p for p in (clean(x) for x in value.split("\n")) if p]
    return " / ".join(parts).replace("|", "\\|")


class SectionBuilder:
    """Collects blocks into sections; a heading or a page change closes the current section."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.headings: list[tuple[int, str]] = []  # (level, text), outermost first
        self.page: int | None = None
        self._blocks: list[str] = []

    def heading(self, level: int, title: str) -> None:
        """A heading of `level` (1 = top): it replaces headings at its level and below."""
        title = clean(title).replace("\n", " ")
        if not title:
            return
        self._flush()
        self.headings = [(lvl, h) for lvl, h in self.headings if lvl < level] + [(level, title)]

    def set_headings(self, path: Sequence[str]) -> None:
        """Replace the whole heading path (PDF outlines, slide titles)."""
        path = [clean(h).replace("\n", " ") for h in path if clean(h)]
        if path != self.heading_path:
            self._flush()
            self.headings = list(enumerate(path, start=1))

    def set_page(self, page: int | None) -> None:
        if page != self.page:
            self._flush()
            self.page = page

    def add(self, block: str) -> None:
        """A paragraph, list item or rendered table (tables are added already rendered)."""
        block = clean(block)
        if block:
            self._blocks.append(block)

    def add_table(self, rows: Sequence[Sequence[str]]) -> None:
        table = text_table(rows)
        if table:
            self._blocks.append(table)

    @property
    def heading_path(self) -> list[str]:
        return [h for _, h in self.headings]

    def finish(self) -> list[Section]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        if self._blocks:
            self.sections.append(Section(text="\n\n".join(self._blocks), page=self.page, heading_path=self.heading_path))
            self._blocks = []
