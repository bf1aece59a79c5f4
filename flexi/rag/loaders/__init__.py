"""Files → `ParsedDocument`: one module per format, chosen by `detect_format` (content first, then name).

Run these only inside the parse sandbox (`flexi.rag.sandbox`): they take hostile bytes, and although each
format has its own checks (zip bombs, DTDs, page counts, encryption), the process limits are what make a
parser bug or an unforeseen bomb cost one failed upload instead of the server.
"""

from __future__ import annotations

from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.loaders.sniff import base_name, detect_format

__all__ = ["base_name", "detect_format", "load"]


def load(data: bytes, name: str, *, max_pages: int, max_unpacked_bytes: int) -> ParsedDocument:
    """Parse `data` (the file's bytes; `name` is only a label and an extension hint, never a path)."""
    kind = detect_format(data, name)
    if kind == "pdf":
        from flexi.rag.loaders.pdf import load_pdf
        document = load_pdf(data, name, max_pages)
    elif kind == "docx":
        from flexi.rag.loaders.word import load_docx
        document = load_docx(data, name, max_pages, max_unpacked_bytes)
    elif kind == "pptx":
        from flexi.rag.loaders.slides import load_pptx
        document = load_pptx(data, name, max_pages, max_unpacked_bytes)
    elif kind == "odt":
        from flexi.rag.loaders.opendocument import load_odt
        document = load_odt(data, name, max_pages, max_unpacked_bytes)
    elif kind == "html":
        from flexi.rag.loaders.webpage import load_html
        document = load_html(data, name)
    elif kind == "markdown":
        from flexi.rag.loaders.markdown import load_markdown
        document = load_markdown(data, name)
    else:
        from flexi.rag.loaders.plaintext import load_text
        document = load_text(data, name, max_pages)
    if not any(section.text.strip() for section in document.sections):
        raise ParseError("no_text", f"{kind} without text")
    return document
