"""PPTX with python-pptx (MIT): one section per slide, numbered like the slide, its title as heading.

Shapes are read top to bottom, left to right (the order a reader's eye takes, not the order they were
drawn in); tables become text tables, groups are opened, speaker notes follow the slide's content, as
they often hold the explanation students ask about.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE

from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.loaders.containers import check_xml_parts, open_zip
from flexi.rag.loaders.sections import SectionBuilder, clean
from flexi.rag.loaders.sniff import base_name


def load_pptx(data: bytes, name: str, max_pages: int, max_unpacked_bytes: int) -> ParsedDocument:
    with open_zip(data, max_unpacked_bytes) as archive:
        check_xml_parts(archive)
    try:
        presentation = Presentation(io.BytesIO(data))
    except (KeyError, ValueError) as exc:
        raise ParseError("corrupt", f"{type(exc).__name__}: {exc}") from None
    slides = presentation.slides
    count = len(slides)
    if count > max_pages:
        raise ParseError("too_many_pages", f"{count} slides", limit=max_pages)
    builder = SectionBuilder()
    first_title = ""
    for number, slide in enumerate(slides, start=1):
        builder.set_page(number)
        title_shape = slide.shapes.title
        title = clean(title_shape.text_frame.text) if title_shape is not None and title_shape.has_text_frame else ""
        first_title = first_title or title
        builder.set_headings([title] if title else [])
        skip = title_shape.shape_id if title_shape is not None else None
        _shapes(builder, slide.shapes, skip)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            builder.add(slide.notes_slide.notes_text_frame.text)
    doc_title = clean(presentation.core_properties.title or "") or first_title or PurePosixPath(base_name(name)).stem
    return ParsedDocument(title=doc_title, format="pptx", sections=builder.finish(), page_count=count)


def _shapes(builder: SectionBuilder, shapes: Iterable[Any], skip: int | None) -> None:
    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if shape.shape_id == skip:
            continue
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            _shapes(builder, shape.shapes, skip)
        elif getattr(shape, "has_table", False) and shape.has_table:
            builder.add_table([[cell.text for cell in row.cells if not cell.is_spanned] for row in shape.table.rows])
        elif shape.has_text_frame:
            for paragraph in shape.text_frame.paragraphs:
                text = paragraph.text
                if text.strip():
                    builder.add("- " + text if paragraph.level else text)
