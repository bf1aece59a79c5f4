"""`flexi rag add|list|rm|search` against a real server with FLEXI_AUTH=on (the course and keys of
tests/campus/test_documents.py: a teacher may add and remove, a student may list and search)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from flexi.cli.rag import MAX_FILES_PER_REQUEST
from tests.campus.test_documents import Course, course  # noqa: F401 - module fixture: server, keys, assistants
from tests.rag.pdf_maker import encrypted, make_pdf

pytestmark = pytest.mark.e2e

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
SKRIPT = [["Kapitel 1: Lineare Regression", "Die Methode der kleinsten Quadrate minimiert die Residuen."],
          ["Kapitel 2: Varianz", "Die Varianz misst die Streuung einer Zufallsvariablen um ihren Erwartungswert."]]
ORGA = "# Organisatorisches\n\nDie Sprechstunde ist dienstags um 14 Uhr in Raum B 204.\n"


def rag(course: Course, who: str, *args: str, **env: str | None) -> Any:
    key = course.keys[who]["Authorization"].removeprefix("Bearer ")
    return CliRunner().invoke(app, ["rag", *args],
                              env={**ENGLISH, "FLEXI_HOST": course.srv.host, "FLEXI_API_KEY": key, **env})


def rows(output: str) -> dict[str, list[str]]:
    """A table's lines by their second column (the document's name), split on the column gap."""
    lines = [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in output.splitlines() if line.strip()]
    return {cells[1]: cells for cells in lines[1:] if len(cells) > 1}


def documents(course: Course) -> dict[str, dict[str, Any]]:
    listed = rag(course, "student", "list", course.slug, "--json")
    assert listed.exit_code == 0, listed.output
    return {d["name"]: d for d in json.loads(listed.stdout)}


def test_add_uploads_a_pdf_and_markdown_and_waits_until_they_are_ready(course: Course, tmp_path: Path) -> None:
    pdf, notes = tmp_path / "skript.pdf", tmp_path / "orga.md"
    pdf.write_bytes(make_pdf(SKRIPT))
    notes.write_text(ORGA, encoding="utf-8")
    result = rag(course, "teacher", "add", course.slug, str(pdf), str(notes))
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert result.stdout.split("\n", 1)[0].split() == ["ID", "NAME", "STATUS", "PAGES", "CHUNKS", "ERROR"]
    assert table["skript.pdf"][2:4] == ["ready", "2"] and int(table["skript.pdf"][4]) >= 2
    assert table["orga.md"][2] == "ready" and int(table["orga.md"][4]) >= 1
    assert "processing" in result.stderr and "2/2" in result.stderr  # the progress bar's last state
    listed = documents(course)
    assert listed["skript.pdf"]["status"] == "ready" and listed["skript.pdf"]["pages"] == 2


def test_list_shows_a_table_for_whoever_may_use_the_assistant(course: Course) -> None:
    result = rag(course, "student", "list", course.slug)
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n", 1)[0].split() == ["ID", "NAME", "STATUS", "PAGES", "CHUNKS", "SIZE", "UPDATED", "ERROR"]
    assert rows(result.stdout)["skript.pdf"][2:4] == ["ready", "2"]


def test_search_finds_the_passage_with_document_page_and_score(course: Course) -> None:
    result = rag(course, "student", "search", course.slug, "Streuung", "Varianz", "-k", "3")
    assert result.exit_code == 0, result.output
    header, best = result.stdout.splitlines()[:2]
    assert header.split() == ["DOCUMENT", "PAGE", "HEADING", "SCORE", "TEXT"]
    assert best.startswith("skript.pdf") and best.split()[1] == "2" and "Streuung" in best
    as_json = json.loads(rag(course, "student", "search", course.slug, "Sprechstunde", "--json").stdout)
    assert as_json[0]["document"] == "orga.md" and "B 204" in as_json[0]["text"]
    nothing = rag(course, "student", "search", course.slug, "Quantenchromodynamik")
    assert nothing.exit_code == 0 and "no passage found" in nothing.stdout


def test_rm_removes_documents_and_an_unknown_id_is_an_error(course: Course, tmp_path: Path) -> None:
    (tmp_path / "alt.md").write_text("# Alt\n\nÜberholte Folien.\n", encoding="utf-8")
    assert rag(course, "teacher", "add", course.slug, str(tmp_path / "alt.md")).exit_code == 0
    doc_id = documents(course)["alt.md"]["id"]
    result = rag(course, "teacher", "rm", course.slug, str(doc_id), "999999")
    assert result.exit_code == 1
    assert f"removed 'alt.md' ({doc_id})" in result.stdout
    assert f"Error: assistant {course.slug} has no document 999999" in result.stderr
    assert "alt.md" not in documents(course)
    again = rag(course, "teacher", "rm", course.slug, str(doc_id))
    assert again.exit_code == 1 and "has no document" in again.stderr and "Traceback" not in again.output


def test_failed_documents_exit_1_with_the_servers_error_each(course: Course, tmp_path: Path) -> None:
    (tmp_path / "geheim.pdf").write_bytes(encrypted(make_pdf([["Vertraulich"]]), "secret"))
    (tmp_path / "kaputt.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 100)
    (tmp_path / "gut.md").write_text("# Gut\n\nDieses Dokument ist in Ordnung.\n", encoding="utf-8")
    result = rag(course, "teacher", "add", course.slug, *(str(tmp_path / n) for n in ("geheim.pdf", "kaputt.pdf", "gut.md")))
    assert result.exit_code == 1, result.output
    table = rows(result.stdout)
    assert table["gut.md"][2] == "ready"
    assert table["geheim.pdf"][2] == "failed" and "password-protected" in table["geheim.pdf"][-1]
    assert table["kaputt.pdf"][2] == "failed"
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 2
    assert errors[0].startswith("Error: geheim.pdf: The file is password-protected.")
    assert errors[1].startswith("Error: kaputt.pdf: ") and len(errors[1]) > len("Error: kaputt.pdf: ") + 10


def test_more_files_than_one_request_takes_are_sent_in_several(course: Course, tmp_path: Path) -> None:
    from flexi.rag.library import MAX_FILES_PER_UPLOAD

    assert MAX_FILES_PER_REQUEST == MAX_FILES_PER_UPLOAD  # the CLI's batches are what the server takes
    names = [f"notiz-{i:02d}.txt" for i in range(MAX_FILES_PER_REQUEST + 1)]
    for i, name in enumerate(names):
        (tmp_path / name).write_text(f"Notiz {i}: Übungsblatt {i} ist bis Freitag abzugeben.\n", encoding="utf-8")
    result = rag(course, "teacher", "add", course.slug, *(str(tmp_path / n) for n in names))
    assert result.exit_code == 0, result.output
    assert {name: cells[2] for name, cells in rows(result.stdout).items()} == {name: "ready" for name in names}
    listed = documents(course)
    removed = rag(course, "teacher", "rm", course.slug, *(str(listed[n]["id"]) for n in names))
    assert removed.exit_code == 0, removed.output


def test_no_wait_returns_after_the_upload(course: Course, tmp_path: Path) -> None:
    (tmp_path / "schnell.md").write_text("# Schnell\n\nGleich fertig.\n", encoding="utf-8")
    result = rag(course, "teacher", "add", course.slug, str(tmp_path / "schnell.md"), "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    [queued] = json.loads(result.stdout)
    assert queued["name"] == "schnell.md" and queued["status"] == "queued"
    course.ready(course.slug, n=len(documents(course)))


def test_url_goes_to_the_server_which_refuses_internal_addresses(course: Course) -> None:
    result = rag(course, "teacher", "add", course.slug, "--url", "http://127.0.0.1:9/intern.html")
    assert result.exit_code == 1
    assert "Error: this URL leads to a private, loopback" in result.stderr


def test_who_may_do_what_and_unknown_things(course: Course, tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("# x\n", encoding="utf-8")
    student = rag(course, "student", "add", course.slug, str(tmp_path / "x.md"))
    assert student.exit_code == 1
    assert "Error: only the course's teachers and administrators may add or delete" in student.stderr
    assert rag(course, "student", "rm", course.slug, str(documents(course)["orga.md"]["id"])).exit_code == 1
    assert "orga.md" in documents(course)
    unknown = rag(course, "teacher", "list", "no-such-tutor")
    assert unknown.exit_code == 1 and "Error: no such assistant" in unknown.stderr and "no-such-tutor" in unknown.stderr
    outsider = rag(course, "outsider", "search", course.slug, "Varianz")
    assert outsider.exit_code == 1 and "no such assistant" in outsider.stderr
    missing = rag(course, "teacher", "add", course.slug, str(tmp_path / "fehlt.pdf"))
    assert missing.exit_code == 1 and "file not found" in missing.stderr
    nothing = rag(course, "teacher", "add", course.slug)
    assert nothing.exit_code == 1 and "--url" in nothing.stderr


def test_german_messages(course: Course, tmp_path: Path) -> None:
    de = {"LANG": "de_DE.UTF-8"}
    (tmp_path / "x.md").write_text("# x\n", encoding="utf-8")
    student = rag(course, "student", "add", course.slug, str(tmp_path / "x.md"), **de)
    assert student.exit_code == 1
    assert "Fehler: nur die Lehrenden des Kurses" in student.stderr
    unknown = rag(course, "teacher", "rm", "no-such-tutor", "1", **de)
    assert unknown.exit_code == 1 and "Fehler: diesen Assistenten gibt es nicht" in unknown.stderr
    gone = rag(course, "teacher", "rm", course.slug, "999999", **de)
    assert gone.exit_code == 1 and f"Fehler: Assistent {course.slug} hat kein Dokument 999999" in gone.stderr
    nothing = rag(course, "student", "search", course.slug, "Quantenchromodynamik", **de)
    assert nothing.exit_code == 0 and "keine Textstelle gefunden" in nothing.stdout


def test_reembed_says_when_there_is_nothing_to_do_and_is_for_teachers_only(course: Course) -> None:
    """Every document of this server was embedded by its one embedding model, so there is nothing to redo
    (the re-embedding itself after a model switch is tested in tests/rag/test_library.py)."""
    done = rag(course, "teacher", "reembed", course.slug)
    assert done.exit_code == 0 and "already has vectors of the current embedding model" in done.stdout, done.output
    student = rag(course, "student", "reembed", course.slug)
    assert student.exit_code == 1 and "only the course's teachers and administrators" in student.stderr
