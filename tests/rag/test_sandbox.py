"""Bad input through the parse sandbox: each is a clear error on that document, and this process goes on.

The hostile files are made here; the misbehaving parsers (crash, runaway memory or CPU, hang, writing
files) run the real worker with its real limits, with only the loader swapped (tests/rag/worker_hooks.py).
"""

from __future__ import annotations

import io
import random
import sys
import time
import zipfile
from pathlib import Path

import pytest

from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.sandbox import ParseLimits, parse_document
from tests.rag.office_maker import BILLION_LAUGHS_DTD, make_docx, make_odt, make_pptx, replace_member
from tests.rag.pdf_maker import encrypted, make_pdf, page_tree_pdf

HOOKS = str(Path(__file__).with_name("worker_hooks.py"))
LIMITS = ParseLimits(timeout_seconds=30, memory_bytes=768 * 1024**2)
GOOD_PDF = make_pdf([["Kapitel 1: Einleitung"], ["Kapitel 2: Methoden"]], title="Gut")


def refused(data: bytes, name: str, limits: ParseLimits = LIMITS, hook: str | None = None) -> ParseError:
    worker = (sys.executable, HOOKS, hook) if hook else None
    with pytest.raises(ParseError) as error:
        parse_document(data, name, limits, **({"worker": worker} if worker else {}))
    assert error.value.message("de") and error.value.message("en")
    return error.value


def still_works() -> None:
    """The calling process is unaffected: the next upload parses."""
    document = parse_document(GOOD_PDF, "gut.pdf", LIMITS)
    assert (document.title, document.page_count, document.page_text(2)) == ("Gut", 2, "Kapitel 2: Methoden")


def test_a_good_file_comes_back_whole() -> None:
    document = parse_document(GOOD_PDF, "gut.pdf", LIMITS)
    assert isinstance(document, ParsedDocument)
    assert [(s.page, s.text) for s in document.sections] == [(1, "Kapitel 1: Einleitung"), (2, "Kapitel 2: Methoden")]


def test_zip_bomb_inside_a_docx() -> None:
    # document.xml unpacks to 150 MiB from ~150 KiB: python-docx would read and parse all of it
    bomb = replace_member(make_docx(), "word/document.xml",
                          lambda xml: xml.replace(b"<w:body>", b"<w:body>" + b" " * (150 * 1024**2), 1))
    assert len(bomb) < 1024**2
    assert refused(bomb, "bomb.docx").kind == "zip_bomb"
    still_works()


def test_many_members_that_add_up_to_a_bomb() -> None:
    # each member packs only 70:1 (under the ratio check), together they unpack past half the memory limit
    rnd = random.Random(13)
    filler = b"".join(bytes([rnd.randrange(256)]) * 200 for _ in range(48 * 1024**2 // 200))
    package = io.BytesIO(make_docx())
    with zipfile.ZipFile(package, "a", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"customXml/item{i}.bin", filler)
    small = ParseLimits(timeout_seconds=30, memory_bytes=256 * 1024**2)  # unpacked at most 128 MiB
    assert len(package.getvalue()) < 4 * 1024**2
    assert refused(package.getvalue(), "viele.docx", small).kind == "zip_bomb"


XXE_DTD = '<!DOCTYPE d [<!ENTITY lol9 SYSTEM "file:///etc/passwd">]>'


@pytest.mark.parametrize("dtd", [BILLION_LAUGHS_DTD, XXE_DTD], ids=["billion-laughs", "external-entity"])
@pytest.mark.parametrize("kind,member,text_tag", [
    ("docx", "word/document.xml", b"<w:t>"), ("pptx", "ppt/slides/slide1.xml", b"<a:t>")])
def test_entity_declarations_in_office_xml(dtd: str, kind: str, member: str, text_tag: bytes) -> None:
    package = make_docx() if kind == "docx" else make_pptx()
    hostile = replace_member(package, member, lambda xml: xml.replace(b"?>", b"?>" + dtd.encode(), 1).replace(
        text_tag, text_tag + b"&lol9;", 1))
    assert b"&lol9;" in zipfile.ZipFile(io.BytesIO(hostile)).read(member)
    assert refused(hostile, f"hostile.{kind}").kind == "xml_entities"
    still_works()


def test_billion_laughs_in_an_odt() -> None:
    laughs = make_odt("<text:p>&lol9;</text:p>", prolog=BILLION_LAUGHS_DTD)
    assert refused(laughs, "laughs.odt").kind == "xml_entities"
    still_works()


def test_encrypted_pdf() -> None:
    error = refused(encrypted(GOOD_PDF, user_password="geheim"), "geheim.pdf")
    assert error.kind == "encrypted" and "Passwort" in error.message("de")
    still_works()


def test_pdf_claiming_100000_pages() -> None:
    error = refused(page_tree_pdf(claimed=100_000, kids=1), "riesig.pdf")
    assert error.kind == "too_many_pages" and "2000" in error.message("en")
    still_works()


def test_pdf_page_tree_that_understates_its_100000_pages() -> None:
    started = time.monotonic()
    assert refused(page_tree_pdf(claimed=1, kids=100_000), "luegt.pdf").kind == "too_many_pages"
    assert time.monotonic() - started < 10  # refused while walking the tree, not after extracting 100,000 pages


def test_pdf_that_makes_the_parser_raise() -> None:
    broken = GOOD_PDF.replace(b"/Type /Pages", b"/Type /Pages /Kids 7", 1).replace(b"xref", b"xrfe")
    assert refused(broken, "kaputt.pdf").kind == "corrupt"
    still_works()


@pytest.mark.parametrize("hook", ["segfault", "killed", "exits"])
def test_a_parser_that_crashes_takes_only_itself_down(hook: str) -> None:
    error = refused(GOOD_PDF, "crash.pdf", hook=hook)
    assert error.kind == "crashed" and "SIGSEGV" not in error.message("en")
    still_works()


def test_a_forged_reply_is_read_with_the_callers_own_limits() -> None:
    error = refused(GOOD_PDF, "x.pdf", hook="forge_kind")  # no {limit} sent: the message still formats
    assert error.kind == "too_many_pages" and "2000" in error.message("de")
    assert refused(GOOD_PDF, "x.pdf", hook="forge_garbage").kind == "crashed"


def test_memory_limit() -> None:
    error = refused(GOOD_PDF, "gierig.pdf", ParseLimits(memory_bytes=512 * 1024**2), hook="hog")
    assert error.kind == "memory" and "512 MiB" in error.message("en")
    still_works()


def test_cpu_time_limit_ends_a_spinning_parser_before_the_wall_clock() -> None:
    started = time.monotonic()
    error = refused(GOOD_PDF, "spin.pdf", ParseLimits(timeout_seconds=60, cpu_seconds=1), hook="spin")
    assert error.kind == "timeout" and time.monotonic() - started < 20


def test_wall_clock_limit_ends_a_hanging_parser() -> None:
    started = time.monotonic()
    error = refused(GOOD_PDF, "haengt.pdf", ParseLimits(timeout_seconds=1.5), hook="sleep")
    assert error.kind == "timeout" and "1.5" in error.message("en")
    assert time.monotonic() - started < 10
    still_works()


def test_the_parser_cannot_write_files(tmp_path: Path) -> None:
    target = tmp_path / "planted.py"
    document = parse_document(str(target).encode(), "x.txt", LIMITS, worker=(sys.executable, HOOKS, "write"))
    assert document.sections[0].text.startswith("write refused")
    assert not target.exists() or target.read_bytes() == b""


def test_the_parser_sees_no_flexi_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXI_DATABASE_URL", "postgresql://flexi:secret@db/flexi")
    monkeypatch.setenv("FLEXI_OIDC_CLIENT_SECRET", "secret")
    names = parse_document(b"-", "x.txt", LIMITS, worker=(sys.executable, HOOKS, "environment")).sections[0].text.split()
    assert "PATH" in names and not [n for n in names if n.startswith("FLEXI_")]


@pytest.mark.parametrize("name", ["../../app/main.py", "..\\..\\app\\main.py"])
def test_a_name_with_dots_and_slashes_is_only_a_label(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "srv" / "flexi"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    document = parse_document(b"Notizen zur Vorlesung", name, LIMITS)
    assert (document.title, document.format, document.sections[0].text) == ("main", "text", "Notizen zur Vorlesung")
    assert not (tmp_path / "app").exists() and list(work.iterdir()) == []


def test_an_upload_larger_than_the_limit_is_refused_before_any_parser_runs() -> None:
    limits = ParseLimits(max_upload_bytes=1024 * 1024)
    # a worker that would fail as "crashed" if it were started
    with pytest.raises(ParseError) as error:
        parse_document(b"x" * (2 * 1024 * 1024), "gross.txt", limits, worker=(sys.executable, "-c", "raise SystemExit(3)"))
    assert error.value.kind == "too_large"
    assert error.value.message("de").startswith("Die Datei ist zu groß (2 MiB); höchstens 1 MiB")
    with pytest.raises(ParseError) as small:  # below 1 MiB the sizes keep two digits instead of both rounding to 1
        parse_document(b"x" * 240_000, "notes.txt", ParseLimits(max_upload_bytes=200_000))
    assert small.value.message("en").startswith("The file is too large (0.23 MiB); at most 0.19 MiB")


def test_limits_come_from_the_settings() -> None:
    from flexi.config import Settings
    settings = Settings(rag_max_upload_bytes=4096, rag_max_pages=7, rag_parse_timeout=2.5, rag_parse_memory_mib=300)
    limits = ParseLimits.from_settings(settings)
    assert (limits.max_upload_bytes, limits.max_pages, limits.timeout_seconds, limits.memory_bytes) == (4096, 7, 2.5, 300 * 1024**2)
    assert (limits.cpu_limit, limits.max_unpacked_bytes) == (3, 150 * 1024**2)
