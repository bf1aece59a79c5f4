"""Which format a file is: its first bytes decide the container, the extension only tells text kinds apart.

A file's name is whatever the uploader's browser sent, so it is never trusted for binaries: a PDF named
notes.docx is read as a PDF, an executable named notes.txt is refused. Only for text (HTML, Markdown,
plain) does the extension choose, after the bytes proved to be text.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import PurePosixPath

from flexi.rag.document import ParseError

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .doc, .ppt, .xls, and password-protected OOXML
ODT_MIME = b"application/vnd.oasis.opendocument.text"
HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown", ".mkd"}
_HTML_START = re.compile(rb"^(\xef\xbb\xbf)?\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.I | re.S)
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def base_name(name: str) -> str:
    """The last part of an uploaded file name (`../../app/main.py` → `main.py`): a label, never a path."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    label = parts[-1] if parts else ""
    return "".join(ch for ch in label if ch.isprintable())[:255] or "document"


def detect_format(data: bytes, name: str) -> str:
    """One of pdf, docx, pptx, odt, html, markdown, text; ParseError("unsupported"/"legacy_office") else."""
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    if data.startswith(OLE_MAGIC):
        # Word 97-2003 and friends; also the wrapper Office writes around a password-protected DOCX/PPTX.
        if "EncryptedPackage".encode("utf-16-le") in data:
            raise ParseError("encrypted", "OLE wrapper of an encrypted Office document")
        raise ParseError("legacy_office", "OLE compound file")
    if data.startswith(b"PK\x03\x04"):
        return _zip_format(data)
    suffix = PurePosixPath(base_name(name)).suffix.lower()
    if not _looks_like_text(data[:8192]):
        raise ParseError("unsupported", f"binary content, extension {suffix!r}")
    if suffix in HTML_EXTENSIONS or (suffix not in MARKDOWN_EXTENSIONS and _HTML_START.match(head)):
        return "html"
    if suffix in MARKDOWN_EXTENSIONS:
        return "markdown"
    return "text"


def _zip_format(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            if "word/document.xml" in names:
                return "docx"
            if "ppt/presentation.xml" in names:
                return "pptx"
            if ("mimetype" in names and archive.getinfo("mimetype").file_size < 200
                    and archive.read("mimetype").strip() == ODT_MIME):
                return "odt"
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError, NotImplementedError) as exc:
        raise ParseError("corrupt", f"unreadable zip: {exc}") from None
    raise ParseError("unsupported", "zip without a DOCX, PPTX or ODT document")


def _looks_like_text(sample: bytes) -> bool:
    """No NUL or other C0 controls (besides tab, newlines, form feed, escape) once a UTF-16 BOM is allowed for."""
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    return not _CONTROL.search(sample)


def decode_text(data: bytes) -> str:
    """Bytes of a text file as str: BOM first, then UTF-8, then Windows-1252 (old Windows files), else Latin-1."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")
