"""What a parsed course document looks like, whatever its format, and why a parse failed.

The loaders (`flexi.rag.loaders`) turn PDF, DOCX, PPTX, ODT, HTML, Markdown and text into one shape so that
chunking, citations and the page view never look at file formats: a title, the page count where the format
has pages, and sections in reading order, each with its page or slide number and the headings above it.
Tables are already rendered as Markdown-style text tables inside a section's text.

`ParseError` carries a `kind` (a stable code for logs, tests and the API) and values for a message in
German or English (`flexi.i18n.rag`), because the one who reads it is a teacher whose upload failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flexi.i18n import text


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path on one page (or slide)."""

    text: str
    page: int | None = None  # 1-based page or slide number; None where the format has no pages (HTML, Markdown, text)
    heading_path: list[str] = field(default_factory=list)  # outermost heading first


@dataclass(frozen=True)
class ParsedDocument:
    """A document as structured text: the input of chunking."""

    title: str
    format: str  # "pdf", "docx", "pptx", "odt", "html", "markdown", "text"
    sections: list[Section]
    page_count: int | None = None  # pages or slides; None where the format has no pages

    def page_text(self, page: int) -> str:
        """All text of one page or slide (what a citation link opens)."""
        return "\n\n".join(s.text for s in self.sections if s.page == page)


# Every kind a parse can fail with; each has the message "parse_<kind>" in flexi.i18n.rag.
ERROR_KINDS = frozenset({
    "too_large",        # the upload exceeds the configured byte limit
    "unsupported",      # not a format we read (or an unknown binary)
    "legacy_office",    # .doc/.ppt/.xls (OLE) files: ask for DOCX/PPTX/PDF
    "encrypted",        # password-protected PDF (or encrypted Office file)
    "too_many_pages",   # more pages or slides than the configured limit
    "zip_bomb",         # an Office/ODF container that would unpack to far more than it weighs
    "xml_entities",     # a DTD or entity declarations inside document XML (entity expansion attacks)
    "corrupt",          # the parser could not read the file
    "no_text",          # parsed fine but holds no text (e.g. a scanned PDF without a text layer)
    "timeout",          # the parse took longer than its wall-clock or CPU-time limit
    "memory",           # the parse needed more memory than its limit
    "crashed",          # the parser process ended without an answer
})


class ParseError(Exception):
    """A document could not be parsed; `message(locale)` tells the teacher why and what to do."""

    def __init__(self, kind: str, detail: str = "", **values: object) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown parse error kind {kind!r}")
        self.kind = kind
        self.detail = detail  # for the server log only: may quote parser internals, never shown to users
        self.values = values
        super().__init__(f"{kind}: {detail}" if detail else kind)

    def message(self, locale: str = "en") -> str:
        return text(f"parse_{self.kind}", locale, **self.values)
