"""A parsed document as the loaders hand it to chunking: its title, page count and sections in reading order.

Minimal shape shared with the loaders (another helper fills it); a section carries its page or slide
number (None for formats without pages, such as Markdown or HTML) and the headings above it, so every
chunk cut from it can say where it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path on one page or slide; tables are text tables inside `text`."""

    page: int | None
    heading_path: list[str]
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    sections: list[Section]
    pages: int
