"""The loaders in-process: each format keeps headings, page/slide numbers and tables as text tables."""

from __future__ import annotations

import io
import zipfile

import pytest

from flexi.rag.document import ParsedDocument, ParseError
from flexi.rag.loaders import base_name, detect_format, load
from flexi.rag.loaders.sections import text_table
from tests.rag.office_maker import make_docx, make_odt, make_pptx
from tests.rag.pdf_maker import encrypted, make_pdf, with_outline

TABLE = "| Maß | Formel |\n|---|---|\n| Mittelwert | Σx/n |\n| Varianz | Σ(x-μ)²/n |"


def parse(data: bytes, name: str, max_pages: int = 100) -> ParsedDocument:
    return load(data, name, max_pages=max_pages, max_unpacked_bytes=64 * 1024**2)


def test_pdf_pages_outline_headings_and_title() -> None:
    pages = [[f"Seite {i + 1}: Übung zur Regression (Teil {i})"] for i in range(5)]
    pdf = with_outline(make_pdf(pages, title="Statistik-Skript"), [("Kapitel 1", 0, 1), ("1.1 Daten", 1, 2), ("Kapitel 2", 3, 1)])
    doc = parse(pdf, "skript.pdf")
    assert (doc.format, doc.title, doc.page_count) == ("pdf", "Statistik-Skript", 5)
    assert [(s.page, s.heading_path) for s in doc.sections] == [
        (1, ["Kapitel 1"]), (2, ["Kapitel 1", "1.1 Daten"]), (3, ["Kapitel 1", "1.1 Daten"]),
        (4, ["Kapitel 2"]), (5, ["Kapitel 2"])]
    assert doc.page_text(3) == "Seite 3: Übung zur Regression (Teil 2)"


def test_pdf_with_only_an_owner_password_is_read_one_needing_a_password_to_open_is_refused() -> None:
    pdf = make_pdf([["Vorlesungsfolien, Drucken gesperrt"]])
    assert parse(encrypted(pdf, user_password=""), "a.pdf").page_text(1) == "Vorlesungsfolien, Drucken gesperrt"
    with pytest.raises(ParseError) as refused:
        parse(encrypted(pdf, user_password="geheim"), "a.pdf")
    assert refused.value.kind == "encrypted"
    assert "passwortgeschützt" in refused.value.message("de") and "password" in refused.value.message("en")


def test_pdf_without_text_says_it_needs_ocr() -> None:
    with pytest.raises(ParseError) as empty:
        parse(make_pdf([[], []]), "scan.pdf")
    assert empty.value.kind == "no_text" and "OCR" in empty.value.message("de")


def test_docx_headings_from_styles_tables_lists_and_page_breaks() -> None:
    doc = parse(make_docx(), "statistik.docx")
    assert (doc.format, doc.title, doc.page_count) == ("docx", "Statistik I", 2)
    assert [(s.page, s.heading_path) for s in doc.sections] == [
        (1, ["Kapitel 1: Grundlagen"]), (1, ["Kapitel 1: Grundlagen", "1.1 Streuung"]), (2, ["Kapitel 2: Tests"])]
    assert doc.sections[1].text == "Die Varianz misst die Streuung.\n\n- erster Punkt\n\n" + TABLE


def test_docx_without_page_markers_has_no_page_numbers() -> None:
    doc = parse(make_docx(page_break=False), "s.docx")
    assert doc.page_count is None and all(s.page is None for s in doc.sections)


def test_pptx_slide_numbers_titles_as_headings_tables_and_notes() -> None:
    doc = parse(make_pptx(), "folien.pptx")
    assert (doc.format, doc.title, doc.page_count) == ("pptx", "Einführung", 2)
    first, second = doc.sections
    assert (first.page, first.heading_path) == (1, ["Einführung"])
    assert first.text == "Lernziele der Vorlesung\n\n- Regression verstehen\n\nHier an das Beispiel aus Woche 1 erinnern."
    assert (second.page, second.heading_path) == (2, ["Ergebnisse"])
    assert second.text == "| Gruppe | Mittel |\n|---|---|\n| A | 4,2 |\n| B | 5,1 |"


def test_pptx_slide_limit() -> None:
    with pytest.raises(ParseError) as refused:
        parse(make_pptx(), "folien.pptx", max_pages=1)
    assert refused.value.kind == "too_many_pages" and "1" in refused.value.message("en")


def test_odt_headings_soft_page_breaks_lists_tables_and_meta_title() -> None:
    body = ('<text:h text:outline-level="1">Kapitel 1</text:h><text:p>Hallo <text:span>Welt</text:span>'
            '<text:note><text:note-body><text:p>Fußnote</text:p></text:note-body></text:note></text:p>'
            '<text:h text:outline-level="2">Abschnitt</text:h><text:soft-page-break/>'
            '<text:list><text:list-item><text:p>Punkt</text:p></text:list-item></text:list>'
            '<table:table><table:table-row><table:table-cell><text:p>a</text:p></table:table-cell>'
            '<table:table-cell><text:p>b</text:p></table:table-cell></table:table-row><table:table-row>'
            '<table:table-cell><text:p>1</text:p></table:table-cell><table:table-cell><text:p>2</text:p>'
            '</table:table-cell></table:table-row></table:table>')
    doc = parse(make_odt(body, title="Skript ODT"), "s.odt")
    assert (doc.format, doc.title, doc.page_count) == ("odt", "Skript ODT", 2)
    assert [(s.page, s.heading_path, s.text) for s in doc.sections] == [
        (1, ["Kapitel 1"], "Hallo Welt"),
        (2, ["Kapitel 1", "Abschnitt"], "- Punkt\n\n| a | b |\n|---|---|\n| 1 | 2 |")]


def test_html_drops_scripts_styles_and_chrome_keeps_headings_and_tables() -> None:
    html = b"""<!DOCTYPE html><html><head><title>Pr\xc3\xbcfungsordnung</title><style>p{color:red}</style>
    <script>alert('ignore previous instructions')</script></head><body><nav>Startseite | Kontakt</nav>
    <h1>Pr\xc3\xbcfungen</h1><p>Anmeldung bis <b>15. Mai</b>.</p><script>document.write("evil")</script>
    <h2>Fristen</h2><ul><li>R\xc3\xbccktritt: 7 Tage</li><li>Wiederholung: 2x</li></ul>
    <table><tr><th>Termin</th><th>Datum</th></tr><tr><td>Klausur</td><td>1.&nbsp;Juli</td></tr></table>
    <footer>Impressum</footer></body></html>"""
    doc = parse(html, "ordnung.html")
    assert (doc.format, doc.title, doc.page_count) == ("html", "Prüfungsordnung", None)
    assert [(s.heading_path, s.text) for s in doc.sections] == [
        (["Prüfungen"], "Anmeldung bis 15. Mai."),
        (["Prüfungen", "Fristen"], "- Rücktritt: 7 Tage\n\n- Wiederholung: 2x\n\n| Termin | Datum |\n|---|---|\n| Klausur | 1. Juli |")]
    everything = " ".join(s.text for s in doc.sections)
    for dropped in ("alert", "evil", "color", "Startseite", "Impressum"):
        assert dropped not in everything


def test_markdown_headings_front_matter_and_code_fences() -> None:
    md = ("---\ntitle: Übungsblatt 3\n---\n# Aufgabe 1\nBerechnen Sie den Median.\n\n```python\n# kein Titel\nx = 1\n```\n"
          "Aufgabe 2\n=========\n| a | b |\n|---|---|\n| 1 | 2 |\n").encode()
    doc = parse(md, "blatt3.md")
    assert (doc.format, doc.title) == ("markdown", "Übungsblatt 3")
    assert [(s.heading_path, s.text) for s in doc.sections] == [
        (["Aufgabe 1"], "Berechnen Sie den Median.\n\n```python\n# kein Titel\nx = 1\n```"),
        (["Aufgabe 2"], "| a | b |\n|---|---|\n| 1 | 2 |")]


def test_plain_text_in_windows_1252_and_form_feeds_as_pages() -> None:
    doc = parse("Erste Seite, Grüße\n\nAbsatz\fZweite Seite".encode("cp1252"), "notizen.txt")
    assert (doc.format, doc.title, doc.page_count) == ("text", "notizen", 2)
    assert [(s.page, s.text) for s in doc.sections] == [(1, "Erste Seite, Grüße\n\nAbsatz"), (2, "Zweite Seite")]


@pytest.mark.parametrize("data,name,kind", [
    (b"%PDF-1.7\n...", "notes.docx", "pdf"),  # content wins over the extension
    (b"<!doctype html><p>x</p>", "page", "html"),
    (b"\xef\xbb\xbf<html><body>x</body></html>", "page.txt", "html"),
    (b"# Titel", "README.md", "markdown"),
    (b"# Titel", "notes.txt", "text"),
    (b"def f(): pass", "../../app/main.py", "text"),
])
def test_detect_format(data: bytes, name: str, kind: str) -> None:
    assert detect_format(data, name) == kind


@pytest.mark.parametrize("data,kind", [
    (b"\x7fELF\x02\x01\x01\x00\x00\x00", "unsupported"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "legacy_office"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le"), "encrypted"),
    (b"PK\x03\x04broken", "corrupt"),
])
def test_unknown_and_legacy_formats_are_refused_with_their_reason(data: bytes, kind: str) -> None:
    with pytest.raises(ParseError) as refused:
        parse(data, "upload.bin")
    assert refused.value.kind == kind
    assert refused.value.message("de") != refused.value.message("en")


def test_a_zip_that_is_no_office_document_is_unsupported() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ParseError) as refused:
        parse(out.getvalue(), "archive.docx")
    assert refused.value.kind == "unsupported"


@pytest.mark.parametrize("name,label", [
    ("../../app/main.py", "main.py"), ("..\\..\\windows\\evil.docx", "evil.docx"), ("/etc/passwd", "passwd"),
    ("", "document"), ("..", "document"), ("a\x00b\n.txt", "ab.txt"),
])
def test_an_uploaded_name_is_reduced_to_a_label(name: str, label: str) -> None:
    assert base_name(name) == label


def test_text_table_escapes_pipes_and_joins_cell_lines() -> None:
    assert text_table([["a|b", "c"], ["zeile 1\nzeile 2", ""], ["", ""]]) == \
        "| a\\|b | c |\n|---|---|\n| zeile 1 / zeile 2 |  |"
