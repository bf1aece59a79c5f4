"""DOCX with python-docx (MIT): headings from paragraph styles, tables as text tables, pages where known.

A DOCX has no fixed pages; Word records where it last broke pages (`w:lastRenderedPageBreak`) and authors
insert explicit page breaks. When a file has either, sections carry the page they start on (Word's own
markers win, as explicit breaks are also rendered ones); otherwise pages are None rather than a guess.
The package is checked for zip bombs and DTDs (`containers`) before python-docx unpacks it.
"""

from __future__ import annotations

import io
import re
from pathlib import PurePosixPath

import docx
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.loaders.containers import check_xml_parts, open_zip
from flexi.rag.loaders.sections import SectionBuilder, clean
from flexi.rag.loaders.sniff import base_name

_HEADING_STYLE = re.compile(r"^(heading|überschrift)\s*([1-9])$", re.I)
_RENDERED = qn("w:lastRenderedPageBreak")
_BREAK = qn("w:br")
_TYPE = qn("w:type")


def load_docx(data: bytes, name: str, max_pages: int, max_unpacked_bytes: int) -> ParsedDocument:
    with open_zip(data, max_unpacked_bytes) as archive:
        check_xml_parts(archive)
    try:
        document = docx.Document(io.BytesIO(data))
    except (KeyError, ValueError) as exc:  # missing parts, broken relationships
        raise ParseError("corrupt", f"{type(exc).__name__}: {exc}") from None
    body = document.element.body
    rendered = any(True for _ in body.iter(_RENDERED))
    marker = "rendered" if rendered else ("explicit" if any(_is_page_break(e) for e in body.iter(_BREAK)) else None)
    builder = SectionBuilder()
    page = 1 if marker else None
    builder.set_page(page)
    title = clean(document.core_properties.title or "")
    for block in document.iter_inner_content():
        if page is not None:
            page += _page_breaks(block, marker)
            if page > max_pages:
                raise ParseError("too_many_pages", f"page {page}", limit=max_pages)
            builder.set_page(page)
        if isinstance(block, Table):
            builder.add_table(_rows(block))
            continue
        text = block.text
        level, is_title = _heading(block)
        if is_title:
            title = title or clean(text)
        elif level:
            builder.heading(level, text)
        elif _is_list_item(block):
            builder.add("- " + text)
        else:
            builder.add(text)
    sections = builder.finish()
    if not title:
        title = next((s.heading_path[0] for s in sections if s.heading_path), "") or PurePosixPath(base_name(name)).stem
    return ParsedDocument(title=title, format="docx", sections=sections, page_count=page)


def _heading(paragraph: Paragraph) -> tuple[int | None, bool]:
    """(heading level or None, whether it is the document title) from the style or its outline level."""
    style = paragraph.style
    name = style.name if style is not None and style.name else ""
    if name.lower() == "title":
        return None, True
    match = _HEADING_STYLE.match(name)
    if match:
        return int(match.group(2)), False
    for p_pr in (paragraph._p.pPr, style.element.pPr if style is not None else None):
        outline = p_pr.find(qn("w:outlineLvl")) if p_pr is not None else None
        if outline is not None:
            value = outline.get(qn("w:val"), "9")
            if value.isdigit() and int(value) < 9:  # 9 = body text
                return int(value) + 1, False
    return None, False


def _is_list_item(paragraph: Paragraph) -> bool:
    """Numbered or bulleted: numbering on the paragraph itself or on its style ("List Bullet")."""
    style = paragraph.style
    for p_pr in (paragraph._p.pPr, style.element.pPr if style is not None else None):
        if p_pr is not None and p_pr.numPr is not None:
            return True
    return False


def _is_page_break(element: object) -> bool:
    return getattr(element, "get", lambda _k: None)(_TYPE) == "page"


def _page_breaks(block: Paragraph | Table, marker: str | None) -> int:
    element = block._p if isinstance(block, Paragraph) else block._tbl
    if marker == "rendered":
        return sum(1 for _ in element.iter(_RENDERED))
    return sum(1 for e in element.iter(_BREAK) if _is_page_break(e))


def _rows(table: Table) -> list[list[str]]:
    """Cell texts per row; a merged cell appears once (python-docx repeats it for each grid column)."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(cell.text)
        rows.append(cells)
    return rows
