"""Small PDFs written by hand for the loader tests and the parse benchmark (no reportlab needed).

Each page is lines of Helvetica text; pypdf's writer adds what is awkward by hand (outline, encryption).
`page_tree_pdf` writes page trees that lie about their size, for the page-limit tests.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from pypdf import PdfWriter

FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"


def assemble(objects: Sequence[bytes], info: int | None = None) -> bytes:
    """Objects numbered from 1 (object 1 is the catalog) as a PDF file with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    info_ref = b" /Info %d 0 R" % info if info else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info_ref, xref)
    return bytes(out)


def _literal(text: str) -> bytes:
    raw = text.encode("cp1252")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def content_stream(lines: Sequence[str]) -> bytes:
    ops = b"BT /F1 11 Tf 14 TL 72 740 Td " + b" ".join(_literal(line) + b" Tj T*" for line in lines) + b" ET"
    return b"<< /Length %d >>\nstream\n" % len(ops) + ops + b"\nendstream"


def make_pdf(pages: Sequence[Sequence[str]], title: str | None = None) -> bytes:
    """A PDF whose page i shows the lines pages[i]."""
    n = len(pages)
    first_page = 4
    kids = b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(n))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n), FONT]
    for i, lines in enumerate(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       b"/Contents %d 0 R >>" % (first_page + 2 * i + 1))
        objects.append(content_stream(lines))
    info = None
    if title is not None:
        objects.append(b"<< /Title %s >>" % _literal(title))
        info = len(objects)
    return assemble(objects, info)


def with_outline(pdf: bytes, items: Sequence[tuple[str, int, int]]) -> bytes:
    """Add bookmarks (title, page index, level 1 or 2; a level-2 item belongs to the last level-1 item)."""
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    parent = None
    for title, page, level in items:
        item = writer.add_outline_item(title=title, page_number=page, parent=parent if level > 1 else None)
        if level == 1:
            parent = item
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted(pdf: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def page_tree_pdf(claimed: int, kids: int) -> bytes:
    """A page tree claiming `claimed` pages (/Count) whose /Kids reference one real page `kids` times."""
    refs = b" ".join([b"3 0 R"] * kids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, claimed),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        FONT,
        content_stream(["the same page again"]),
    ]
    return assemble(objects)
