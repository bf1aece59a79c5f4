"""HTML with the standard library's html.parser: no network, no entities beyond HTML's own, no scripts.

Scripts, styles, templates, embedded SVG/MathML and page chrome (nav, footer, forms) are dropped; their
text would only pollute retrieval, and a script's text must never reach a prompt as course material.
Headings h1-h6 open sections, lists become "- " items, tables become text tables. html.parser is
forgiving with broken markup and has no C parts that a hostile page could crash.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import PurePosixPath

from flexi.rag.document import ParsedDocument
from flexi.rag.loaders.sections import SectionBuilder, clean
from flexi.rag.loaders.sniff import base_name, decode_text

SKIPPED = {"script", "style", "noscript", "template", "svg", "math", "head", "nav", "footer", "form",
           "iframe", "object", "embed", "canvas", "select", "button", "textarea", "audio", "video"}
BLOCKS = {"p", "div", "section", "article", "main", "header", "aside", "blockquote", "pre", "ul", "ol",
          "dl", "dt", "dd", "figure", "figcaption", "address", "details", "summary", "hr", "br", "li",
          "caption", "center"}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "track", "wbr", "param"}


def load_html(data: bytes, name: str) -> ParsedDocument:
    reader = _Reader()
    reader.feed(decode_text(data))
    reader.close()
    sections = reader.builder.finish()
    title = clean(reader.title) or reader.first_h1 or PurePosixPath(base_name(name)).stem
    return ParsedDocument(title=title, format="html", sections=sections, page_count=None)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = SectionBuilder()
        self.title = ""
        self.first_h1 = ""
        self._skip: list[str] = []  # open skipped elements (their content is dropped)
        self._in_title = False
        self._text: list[str] = []  # the current paragraph (or heading)
        self._heading: int | None = None
        self._table: list[list[str]] | None = None  # rows of the open table
        self._nested = 0  # tables inside a table: their text flows into the outer cell
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._skip_not_head():
            self._in_title = True
            return
        if tag in SKIPPED:
            if tag not in VOID:
                self._skip.append(tag)
            return
        if self._skip:
            return
        if tag in HEADINGS:
            self._paragraph()
            self._heading = HEADINGS[tag]
        elif tag in ("table", "tr", "td", "th") and self._nested:
            self._nested += tag == "table"
            if self._cell is not None:
                self._cell.append(" ")
        elif tag == "table":
            if self._table is not None:
                self._nested = 1
                return
            self._paragraph()
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._end_cell()
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._end_cell()
            self._cell = []
        elif tag in BLOCKS:
            if self._cell is not None:
                self._cell.append("\n")
            else:
                self._paragraph()
                if tag == "li":
                    self._text.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if self._skip:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag in HEADINGS and self._heading is not None:
            text = clean("".join(self._text)).replace("\n", " ")
            self._text = []
            if text:
                self.builder.heading(self._heading, text)
                if self._heading == 1 and not self.first_h1:
                    self.first_h1 = text
            self._heading = None
        elif tag == "table" and self._nested:
            self._nested -= 1
        elif tag in ("td", "th") and not self._nested:
            self._end_cell()
        elif tag == "table" and self._table is not None:
            self._end_table()
        elif tag in BLOCKS and self._cell is None:
            self._paragraph()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip:
            return
        elif self._cell is not None:
            self._cell.append(data)
        else:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        if self._table is not None:
            self._end_table()
        self._paragraph()

    def _skip_not_head(self) -> bool:
        return any(tag != "head" for tag in self._skip)

    def _end_cell(self) -> None:
        if self._cell is not None and self._table is not None:
            if not self._table:
                self._table.append([])
            self._table[-1].append("".join(self._cell))
        self._cell = None

    def _end_table(self) -> None:
        self._end_cell()
        if self._table:
            self.builder.add_table(self._table)
        self._table = None

    def _paragraph(self) -> None:
        text = "".join(self._text)
        self._text = []
        if self._heading is not None:  # a block inside a heading: keep collecting the heading
            self._text = [text]
            return
        if text.strip(" -\n\t"):
            self.builder.add(text)
