"""ODT (OpenDocument text) read directly from content.xml with defusedxml: no extra dependency.

odfpy would add a dependency for what is a walk over one XML tree. defusedxml refuses any DTD, so entity
bombs and external entities never expand; the container is checked for zip bombs first. Headings are
`text:h` with their outline level; pages are known where LibreOffice wrote `text:soft-page-break`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XmlSyntaxError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.loaders.containers import open_zip
from flexi.rag.loaders.sections import SectionBuilder, clean
from flexi.rag.loaders.sniff import base_name

OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
DC = "{http://purl.org/dc/elements/1.1/}"
SKIPPED = {TEXT + "table-of-content", TEXT + "alphabetical-index", TEXT + "illustration-index",
           TEXT + "table-index", TEXT + "bibliography", TEXT + "sequence-decls", TEXT + "tracked-changes",
           OFFICE + "forms"}


def load_odt(data: bytes, name: str, max_pages: int, max_unpacked_bytes: int) -> ParsedDocument:
    with open_zip(data, max_unpacked_bytes) as archive:
        names = set(archive.namelist())
        if "content.xml" not in names:
            raise ParseError("corrupt", "no content.xml")
        root = _xml(archive.read("content.xml"), "content.xml")
        meta = _xml(archive.read("meta.xml"), "meta.xml") if "meta.xml" in names else None
    body = root.find(f"{OFFICE}body/{OFFICE}text")
    if body is None:
        raise ParseError("corrupt", "no office:text body")
    walker = _Walker(max_pages, paged=next(body.iter(TEXT + "soft-page-break"), None) is not None)
    walker.blocks(body)
    sections = walker.builder.finish()
    node = meta.find(f"{OFFICE}meta/{DC}title") if meta is not None else None
    title = clean("".join(node.itertext())) if node is not None else ""
    if not title:
        title = next((s.heading_path[0] for s in sections if s.heading_path), "") or PurePosixPath(base_name(name)).stem
    return ParsedDocument(title=title, format="odt", sections=sections, page_count=walker.page)


def _xml(data: bytes, part: str) -> Element:
    try:
        return fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ParseError("xml_entities", f"{part}: {exc!r}") from None
    except XmlSyntaxError as exc:
        raise ParseError("corrupt", f"{part}: {exc}") from None


class _Walker:
    def __init__(self, max_pages: int, paged: bool) -> None:
        self.builder = SectionBuilder()
        self.max_pages = max_pages
        self.page: int | None = 1 if paged else None
        self.builder.set_page(self.page)

    def blocks(self, parent: Element, prefix: str = "") -> None:
        for child in parent:
            tag = child.tag
            if tag in SKIPPED:
                continue
            if tag == TEXT + "soft-page-break":
                self._next_page()
            elif tag == TEXT + "h":
                self._breaks_inside(child)
                level = child.get(TEXT + "outline-level", "1")
                self.builder.heading(int(level) if level.isdigit() else 1, inline(child))
            elif tag == TEXT + "p":
                self._breaks_inside(child)
                text = inline(child)
                if text.strip():
                    self.builder.add(prefix + text)
            elif tag == TEXT + "list":
                for item in child:
                    self.blocks(item, prefix="- ")
            elif tag == TABLE + "table":
                self.builder.add_table(self._rows(child))
            else:  # text:section, text:list-item, and other containers: their paragraphs count
                self.blocks(child, prefix)

    def _rows(self, table: Element) -> list[list[str]]:
        rows = []
        for row in table.iter(TABLE + "table-row"):
            cells = []
            for cell in row:
                if cell.tag == TABLE + "table-cell":
                    cells.append("\n".join(inline(p) for p in cell.iter() if p.tag in (TEXT + "p", TEXT + "h")))
            rows.append(cells)
        return rows

    def _breaks_inside(self, element: Element) -> None:
        for _ in element.iter(TEXT + "soft-page-break"):
            self._next_page()

    def _next_page(self) -> None:
        if self.page is None:
            return
        self.page += 1
        if self.page > self.max_pages:
            raise ParseError("too_many_pages", f"page {self.page}", limit=self.max_pages)
        self.builder.set_page(self.page)


def inline(element: Element) -> str:
    """The text of a paragraph: spans and links opened, text:s/tab/line-break as spaces and breaks, notes left out."""
    parts = [element.text or ""]
    for child in element:
        tag = child.tag
        if tag == TEXT + "s":
            count = child.get(TEXT + "c", "1")
            parts.append(" " * min(int(count) if count.isdigit() else 1, 100))
        elif tag == TEXT + "tab":
            parts.append("\t")
        elif tag == TEXT + "line-break":
            parts.append("\n")
        elif tag in (TEXT + "note", TEXT + "soft-page-break", OFFICE + "annotation"):
            pass
        else:
            parts.append(inline(child))
        parts.append(child.tail or "")
    return "".join(parts)
