"""Plain text: paragraphs as they are; form feeds (as pdftotext and old printers write them) separate pages."""

from __future__ import annotations

from pathlib import PurePosixPath

from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.loaders.sections import SectionBuilder
from flexi.rag.loaders.sniff import base_name, decode_text


def load_text(data: bytes, name: str, max_pages: int) -> ParsedDocument:
    text = decode_text(data)
    pages = text.split("\f") if "\f" in text else None
    if pages is not None and len(pages) > max_pages:
        raise ParseError("too_many_pages", f"{len(pages)} form feeds", limit=max_pages)
    builder = SectionBuilder()
    for number, page in enumerate(pages or [text], start=1):
        builder.set_page(number if pages is not None else None)
        for paragraph in page.replace("\r\n", "\n").split("\n\n"):
            builder.add(paragraph)
    title = PurePosixPath(base_name(name)).stem
    return ParsedDocument(title=title, format="text", sections=builder.finish(),
                          page_count=len(pages) if pages is not None else None)
