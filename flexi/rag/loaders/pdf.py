"""PDF with pypdf (BSD, pure Python): one section per page, headings from the outline (bookmarks).

pypdf instead of PyMuPDF because PyMuPDF is AGPL. pypdf has no table detection; its text follows the
content stream, so table cells come out row by row as lines. The page count is checked twice: the
claimed /Count before anything is walked, and the walk of the page tree itself is bounded (a tree can
claim one page and reference 100,000), so a hostile page tree costs milliseconds, not the time limit.
"""

from __future__ import annotations

import io
import logging
from pathlib import PurePosixPath
from typing import Any

from pypdf import PasswordType, PdfReader, apply_configuration
from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError

from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.loaders.sections import SectionBuilder, clean
from flexi.rag.loaders.sniff import base_name

log = logging.getLogger(__name__)
OUTLINE_LIMIT = 5_000  # bookmarks read for headings; a real book has a few hundred


def load_pdf(data: bytes, name: str, max_pages: int) -> ParsedDocument:
    # Intermediate /Pages nodes count as entries too: a balanced tree has far fewer than its pages.
    with apply_configuration(page_tree_maximum_entries=2 * max_pages + 64):
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            _decrypt(reader)
            claimed = _claimed_pages(reader)
            if claimed > max_pages:
                raise ParseError("too_many_pages", f"/Count {claimed}", limit=max_pages)
            pages = reader.pages
            count = len(pages)  # walks the page tree (bounded by the configuration above)
        except LimitReachedError as exc:
            raise ParseError("too_many_pages", str(exc), limit=max_pages) from None
        except FileNotDecryptedError as exc:
            raise ParseError("encrypted", str(exc)) from None
        except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ParseError("corrupt", f"{type(exc).__name__}: {exc}") from None
        if count > max_pages:
            raise ParseError("too_many_pages", f"{count} pages", limit=max_pages)
        marks = _outline_marks(reader)
        builder = SectionBuilder()
        for index in range(count):
            builder.set_page(index + 1)
            if index in marks:
                builder.set_headings(marks[index])
            try:
                builder.add(pages[index].extract_text())
            except Exception as exc:  # one unreadable page must not lose the rest of the course script
                log.info("pdf %s: page %d unreadable: %s: %s", base_name(name), index + 1, type(exc).__name__, exc)
        title = _title(reader) or PurePosixPath(base_name(name)).stem
    return ParsedDocument(title=title, format="pdf", sections=builder.finish(), page_count=count)


def _decrypt(reader: PdfReader) -> None:
    """Open PDFs with an empty user password (only an owner password restricting printing or copying, common
    for lecture slides); refuse ones that need a password to open."""
    if not reader.is_encrypted:
        return
    try:
        result = reader.decrypt("")
    except Exception as exc:  # unsupported algorithm, missing crypto provider, broken /Encrypt
        raise ParseError("encrypted", f"cannot decrypt: {type(exc).__name__}: {exc}") from None
    if result == PasswordType.NOT_DECRYPTED:
        raise ParseError("encrypted", "needs a user password")


def _claimed_pages(reader: PdfReader) -> int:
    try:
        count = reader.root_object["/Pages"].get_object().get("/Count", 0)
        return int(count)
    except (KeyError, TypeError, ValueError, AttributeError):
        return 0


def _title(reader: PdfReader) -> str:
    try:
        meta = reader.metadata
        return clean(str(meta.title)) if meta and meta.title else ""
    except Exception:  # a broken /Info dictionary is no reason to lose the document
        return ""


def _outline_marks(reader: PdfReader) -> dict[int, list[str]]:
    """Page index → heading path of the last bookmark pointing into that page, pages without one inherit.

    Returns only the pages where the path changes; the builder keeps the path until the next change.
    """
    found: list[tuple[int, int, list[str]]] = []  # (page index, order, path)

    def walk(items: list[Any], path: list[str]) -> None:
        last: list[str] = path
        for item in items:
            if len(found) >= OUTLINE_LIMIT:
                return
            if isinstance(item, list):
                walk(item, last)  # children follow their parent in the outline list
                continue
            title = clean(str(getattr(item, "title", "") or ""))
            last = path + [title] if title else path
            try:
                page = reader.get_destination_page_number(item)
            except Exception:
                page = None
            if page is not None and page >= 0:
                found.append((page, len(found), last))

    try:
        walk(reader.outline, [])
    except Exception as exc:  # an outline is a bonus; a broken one must not fail the document
        log.info("pdf outline unreadable: %s: %s", type(exc).__name__, exc)
    marks: dict[int, list[str]] = {}
    for page, _order, path in sorted(found):
        marks[page] = path
    return marks
