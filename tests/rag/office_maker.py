"""DOCX, PPTX and ODT files made in the tests with their usual libraries (ODT by hand: it is a ZIP of XML)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import docx
from docx.enum.text import WD_BREAK
from pptx import Presentation
from pptx.util import Inches

ODT_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:dc="http://purl.org/dc/elements/1.1/"')
BILLION_LAUGHS_DTD = ('<!DOCTYPE lolz [<!ENTITY lol "lol">'
                      + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
                                for i in range(1, 10))
                      + "]>")


def make_docx(page_break: bool = True) -> bytes:
    document = docx.Document()
    document.core_properties.title = "Statistik I"
    document.add_heading("Kapitel 1: Grundlagen", level=1)
    document.add_paragraph("Der Mittelwert ist die Summe geteilt durch die Anzahl.")
    document.add_heading("1.1 Streuung", level=2)
    document.add_paragraph("Die Varianz misst die Streuung.")
    document.add_paragraph("erster Punkt", style="List Bullet")
    table = document.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("Maß", "Formel"), ("Mittelwert", "Σx/n"), ("Varianz", "Σ(x-μ)²/n")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    if page_break:
        document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    document.add_heading("Kapitel 2: Tests", level=1)
    document.add_paragraph("Ein t-Test vergleicht Mittelwerte.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pptx() -> bytes:
    presentation = Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])  # title and content
    slide.shapes.title.text = "Einführung"
    body = slide.placeholders[1].text_frame
    body.text = "Lernziele der Vorlesung"
    item = body.add_paragraph()
    item.text = "Regression verstehen"
    item.level = 1
    slide.notes_slide.notes_text_frame.text = "Hier an das Beispiel aus Woche 1 erinnern."
    slide = presentation.slides.add_slide(presentation.slide_layouts[5])  # title only
    slide.shapes.title.text = "Ergebnisse"
    shape = slide.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2))
    for r, (a, b) in enumerate([("Gruppe", "Mittel"), ("A", "4,2"), ("B", "5,1")]):
        shape.table.cell(r, 0).text, shape.table.cell(r, 1).text = a, b
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def make_odt(body: str, title: str = "Skript", prolog: str = "") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")
        archive.writestr("META-INF/manifest.xml", '<?xml version="1.0"?><manifest:manifest '
                         'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"/>',
                         compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("content.xml", f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<office:document-content '
                         f'{ODT_NS}><office:body><office:text>{body}</office:text></office:body>'
                         f'</office:document-content>', compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("meta.xml", f'<?xml version="1.0"?><office:document-meta {ODT_NS}><office:meta>'
                         f'<dc:title>{title}</dc:title></office:meta></office:document-meta>',
                         compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def replace_member(package: bytes, name: str, make: Callable[[bytes], bytes]) -> bytes:
    """The ZIP `package` with member `name` replaced by make(old content)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            target.writestr(info.filename, make(content) if info.filename == name else content,
                            compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()
