"""Prompt templates in a real Chromium against a real Flexi server (issue 15): a teacher creates a template in
the "Templates" view, a student runs it through the form generated from its parameter types (maxlength,
min/max, a select for the enum, the course field shown, not editable), the browser refuses out-of-range
input before sending, the answer streams in; axe-core finds no serious or critical violations on the form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from flexi.access.passwords import hash_password
from tests.access_helpers import ServerDB
from tests.conftest import RunningServer, start_server, stop_server
from tests.web.conftest import watched_pages
from tests.web.test_web_ui import PASSWORD, axe, sign_in

pytestmark = pytest.mark.e2e

PARAMETERS = [
    {"name": "essay", "type": "string", "max_length": 300, "label": "Essay"},
    {"name": "level", "type": "enum", "values": ["A1", "B2", "C1"], "label": "Level"},
    {"name": "hints", "type": "integer", "min": 1, "max": 3, "label": "Hints"},
    {"name": "goals", "type": "course", "field": "learning_objectives", "label": "Goals"},
]


class Campus:
    def __init__(self, srv: RunningServer, db: ServerDB) -> None:
        self.srv, self.db = srv, db


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    home = tmp_path_factory.mktemp("webtemplates") / "home"
    srv = start_server(home, {"FLEXI_AUTH": "on"})
    c = Campus(srv, ServerDB(home))
    hashed = hash_password(PASSWORD)
    users = {s: c.db.add_user(s, role=r, password_hash=hashed, display_name=s.title())
             for s, r in (("prof", "teacher"), ("ben", "student"))}
    course = c.db.add_course("optics", {users["prof"]: "teacher", users["ben"]: "student"})
    with c.db.session() as s:
        from flexi.db.models import Course
        s.get(Course, course).learning_objectives = "Explain refraction"  # type: ignore[union-attr]
        s.commit()
    try:
        yield c
    finally:
        c.db.close()
        stop_server(srv)


@pytest.fixture()
def page_of(browser: Any, campus: Campus) -> Iterator[Any]:
    with watched_pages(browser, campus.srv.url, "en-GB") as make:
        yield make


def test_teacher_creates_and_student_runs_through_the_generated_form(page_of: Any, campus: Campus,
                                                                     axe_source: str) -> None:
    teacher = page_of()
    sign_in(teacher, campus, "prof")
    teacher.wait_for_selector("#prompt")
    teacher.click("nav a[data-route=templates]")
    teacher.click("a[href='#/templates/new']")
    teacher.fill("#tpl-name", "Essay feedback")
    teacher.fill("#tpl-instructions", "Give {{hints}} hints on [essay] for level {{level}}.")
    teacher.fill("#tpl-parameters", json.dumps(PARAMETERS))
    teacher.fill("#tpl-max-tokens", "4")
    teacher.click("#tpl-edit-form button[type=submit]")
    teacher.wait_for_selector("section.card h2:text('Essay feedback')")
    assert "template/essay-feedback" in teacher.inner_text("#main")

    student = page_of()
    sign_in(student, campus, "ben")
    student.wait_for_selector("#prompt")
    student.goto(campus.srv.url + "/#/templates")
    student.wait_for_selector("section.card h2:text('Essay feedback')")
    assert student.locator("a:text('Edit')").count() == 0  # students run, teachers edit
    student.click("a:text('Run')")
    student.wait_for_selector("#tpl-run-form")
    essay, level, hints = student.locator("#tpl-p-essay"), student.locator("#tpl-p-level"), student.locator("#tpl-p-hints")
    assert essay.evaluate("e => e.tagName") == "TEXTAREA" and essay.get_attribute("maxlength") == "300"
    assert level.evaluate("e => [...e.options].map(o => o.value)") == ["", "A1", "B2", "C1"]
    assert hints.get_attribute("type") == "number" and hints.get_attribute("step") == "1"
    assert (hints.get_attribute("min"), hints.get_attribute("max")) == ("1", "3")
    assert student.inner_text("#tpl-p-goals") == "Explain refraction"  # from the course, not an input
    assert student.locator("label[for=tpl-p-essay]").inner_text() == "Essay"
    assert axe(student, axe_source) == []

    essay.fill("My essay about light.")
    level.select_option("B2")
    hints.fill("7")  # out of range: the browser refuses to send
    student.click("#tpl-run-form button[type=submit]")
    assert hints.evaluate("e => e.validity.rangeOverflow") is True
    assert student.inner_text("#tpl-output") == ""
    hints.fill("2")
    student.click("#tpl-run-form button[type=submit]")
    student.wait_for_function("() => document.querySelector('#tpl-output').textContent.length > 0", timeout=60000)
    assert student.inner_text("#tpl-run-form .error") == ""
