"""`flexi template list|show|add|edit|run|rm` against a real server with FLEXI_AUTH=on (the school of
tests/campus/test_templates.py: a teacher adds and edits, a student lists, shows and runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from tests.campus.test_templates import FEW, School, school  # noqa: F401 - module fixture: server, keys
from tests.conftest import MODEL

pytestmark = pytest.mark.e2e

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
GERMAN = {**ENGLISH, "LANG": "de_DE.UTF-8"}


def flexi(school: School, who: str, *args: str, env: dict[str, str | None] = ENGLISH) -> Any:
    key = school.keys[who]["Authorization"].removeprefix("Bearer ")
    return CliRunner().invoke(app, ["template", *args],
                              env={**env, "FLEXI_HOST": school.srv.host, "FLEXI_API_KEY": key})


def test_the_whole_cycle(school: School, tmp_path: Path) -> None:
    spec = tmp_path / "quiz.json"
    spec.write_text(json.dumps({
        "name": "Quizfragen", "instructions": "Write {{count}} quiz questions about [topic].", "model": MODEL,
        "options": FEW, "parameters": [{"name": "topic", "type": "string", "max_length": 100},
                                       {"name": "count", "type": "integer", "min": 1, "max": 3}]}), encoding="utf-8")
    added = flexi(school, "t-teacher", "add", str(spec), "--course", str(school.course), "--slug", "quiz")
    assert added.exit_code == 0, added.output
    assert added.stdout.strip() == "template quiz created (version 1)"

    listed = flexi(school, "t-student", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0].split() == ["SLUG", "VERSION", "NAME", "COURSE", "MODEL", "PARAMETERS"]
    assert any(line.split()[:2] == ["quiz", "1"] for line in listed.stdout.splitlines())

    shown = flexi(school, "t-student", "show", "quiz")
    assert shown.exit_code == 0 and "topic" in shown.stdout and "1 … 3" in shown.stdout
    assert "Write {{count}}" not in shown.stdout  # the instructions are for the course's teachers
    assert "Write {{count}}" in flexi(school, "t-teacher", "show", "quiz").stdout

    topic = tmp_path / "topic.txt"
    topic.write_text("Varianz", encoding="utf-8")
    ran = flexi(school, "t-student", "run", "quiz", f"topic=@{topic}", "count=2")
    assert ran.exit_code == 0, ran.output
    assert ran.stdout.strip()
    answer = flexi(school, "t-student", "run", "quiz", "topic=Varianz", "count=2", "--json")
    assert json.loads(answer.stdout)["model"] == "template/quiz@1"

    wrong = flexi(school, "t-student", "run", "quiz", "topic=Varianz", "count=9")
    assert wrong.exit_code == 1 and "Error: parameter count must be between 1 and 3" in wrong.output
    german = flexi(school, "t-student", "run", "quiz", "topic=Varianz", "count=zwei", env=GERMAN)
    assert german.exit_code == 1 and "Fehler: Parameter werden als NAME=WERT angegeben" in german.output

    change = tmp_path / "change.json"
    change.write_text(json.dumps({"instructions": "Write {{count}} hard quiz questions about [topic]."}), encoding="utf-8")
    edited = flexi(school, "t-teacher", "edit", "quiz", str(change))
    assert edited.exit_code == 0 and edited.stdout.strip() == "template quiz changed: now version 2"
    old = flexi(school, "t-teacher", "show", "quiz", "--version", "1", "--json")
    assert json.loads(old.stdout)["instructions"].startswith("Write {{count}} quiz")
    refused = flexi(school, "t-student", "edit", "quiz", str(change))
    assert refused.exit_code == 1 and "teachers" in refused.output

    assert flexi(school, "t-student", "rm", "quiz").exit_code == 1
    removed = flexi(school, "t-teacher", "rm", "quiz", env=GERMAN)
    assert removed.exit_code == 0 and removed.stdout.strip() == "Vorlage quiz gelöscht"
    assert flexi(school, "t-teacher", "show", "quiz").exit_code == 1
