"""Markdown: ATX (`# …`) and setext (underlined) headings open sections; code fences are kept as text.

No Markdown library: retrieval needs the structure (headings) and the words, not HTML. Tables written
with pipes already are text tables and stay as they are; YAML front matter is dropped (its `title:` is
the document's title).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from flexi.rag.document import ParsedDocument
from flexi.rag.loaders.sections import SectionBuilder
from flexi.rag.loaders.sniff import base_name, decode_text

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FRONT_TITLE = re.compile(r"^title:\s*[\"']?(.*?)[\"']?\s*$", re.M)


def load_markdown(data: bytes, name: str) -> ParsedDocument:
    text = decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    title = ""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end > 0:
            match = _FRONT_TITLE.search(text[4:end])
            title = match.group(1) if match else ""
            text = text[text.find("\n", end + 1) + 1:] if text.find("\n", end + 1) > 0 else ""
    builder = SectionBuilder()
    paragraph: list[str] = []
    fence: str | None = None
    first_h1 = ""

    def flush() -> None:
        builder.add("\n".join(paragraph))
        paragraph.clear()

    for line in text.split("\n"):
        fence_match = _FENCE.match(line)
        if fence is not None:
            paragraph.append(line)
            if fence_match and fence_match.group(1)[0] == fence[0] and len(fence_match.group(1)) >= len(fence):
                fence = None
                flush()  # a code block is a block of its own
            continue
        if fence_match:
            flush()
            fence = fence_match.group(1)
            paragraph.append(line)
            continue
        atx = _ATX.match(line)
        setext = _SETEXT.match(line)
        if atx:
            flush()
            level, heading = len(atx.group(1)), (atx.group(2) or "").strip()
            builder.heading(level, heading)
            first_h1 = first_h1 or (heading if level == 1 else "")
        elif setext and len(paragraph) == 1 and paragraph[0].strip() and not paragraph[0].lstrip().startswith(("-", "|", ">")):
            heading = paragraph.pop().strip()
            level = 1 if setext.group(1)[0] == "=" else 2
            builder.heading(level, heading)
            first_h1 = first_h1 or (heading if level == 1 else "")
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
    flush()
    title = title or first_h1 or PurePosixPath(base_name(name)).stem
    return ParsedDocument(title=title, format="markdown", sections=builder.finish(), page_count=None)
