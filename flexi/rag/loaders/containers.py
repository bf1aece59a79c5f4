"""Checks on ZIP-based formats (DOCX, PPTX, ODT) before any parser unpacks them.

python-docx and python-pptx read every part of the package into memory, and XML parsers expand what
entities declare. So before a parser sees the file:
- the ZIP's central directory must promise a sane amount of data: a bounded number of members, a bounded
  total unpacked size, and no large member that unpacks to more than `MAX_RATIO` times its packed size (a
  zip bomb). Sizes that lie are caught by `zipfile` itself: it stops reading a member at its declared size
  and the CRC check fails ("corrupt");
- every XML part must be free of a DTD: Office and ODF documents never carry one, and a DTD is where
  entity bombs ("billion laughs") and external entities live. The check parses only the prolog of each
  part with defusedxml, so it costs little whatever the part's size.
The sandbox's memory and time limits stay as the backstop for anything these checks miss.
"""

from __future__ import annotations

import io
import zipfile
from xml.etree.ElementTree import ParseError as XmlSyntaxError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from flexi.rag.document import ParseError

MAX_MEMBERS = 10_000
MAX_RATIO = 100  # deflate reaches about 10-20x on XML; zeros or repeated text reach 1000x
RATIO_FLOOR = 1024**2  # members smaller than this unpacked may have any ratio (tiny XML parts compress well)
XML_SUFFIXES = (".xml", ".rels")


def open_zip(data: bytes, max_unpacked_bytes: int) -> zipfile.ZipFile:
    """The ZIP in `data`, after checking that it unpacks to a sane size (raises ParseError otherwise)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise ParseError("corrupt", f"not a readable zip: {exc}") from None
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ParseError("zip_bomb", f"{len(members)} members")
    total = 0
    for info in members:
        if info.flag_bits & 0x1:
            raise ParseError("encrypted", f"encrypted zip member {info.filename!r}")
        total += info.file_size
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ParseError("zip_bomb", f"{info.filename!r}: {info.file_size} bytes from {info.compress_size}")
    if total > max_unpacked_bytes:
        raise ParseError("zip_bomb", f"unpacks to {total} bytes, limit {max_unpacked_bytes}")
    return archive


def check_xml_parts(archive: zipfile.ZipFile) -> None:
    """Refuse a package any of whose XML parts declares a DTD (entity expansion, external entities)."""
    for info in archive.infolist():
        if info.filename.lower().endswith(XML_SUFFIXES):
            with archive.open(info) as part:
                check_xml_prolog(part, info.filename)


def check_xml_prolog(stream: io.IOBase | zipfile.ZipExtFile, name: str) -> None:
    """Parse `stream` up to its root element with a DTD forbidden; stops reading there."""
    try:
        for _event, _element in iterparse(stream, events=("start",), forbid_dtd=True):
            break
    except DefusedXmlException as exc:
        raise ParseError("xml_entities", f"{name}: {exc!r}") from None
    except XmlSyntaxError as exc:
        raise ParseError("corrupt", f"{name}: {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ParseError("corrupt", f"{name}: {exc}") from None
