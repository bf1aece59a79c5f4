"""Prompt templates end to end on a real server (FLEXI_AUTH=on, the real model): teachers keep versioned
templates with typed parameters, course members and role-allowed keys run them through `/templates/{ref}/run`
and as the model `template/<slug>` with the official ollama and openai clients; every bad parameter is a 400
naming it; usage is billed to the course and marked with the template and the version that ran."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e
FEW = {"num_predict": 4, "temperature": 0}
PARAMS = [
    {"name": "essay", "type": "string", "max_length": 200, "label": "Aufsatz"},
    {"name": "level", "type": "enum", "values": ["A1", "B2", "C1"]},
    {"name": "hints", "type": "integer", "min": 1, "max": 3, "default": 2},
    {"name": "goals", "type": "course", "field": "learning_objectives"},
]
GOOD = {"essay": "Die Varianz misst die Streuung.", "level": "B2"}


@dataclass
class School:
    srv: RunningServer
    db: ServerDB
    course: int
    keys: dict[str, dict[str, str]]

    def url(self, path: str) -> str:
        return self.srv.url + path

    def call(self, method: str, path: str, who: str, body: Any = None, **headers: str) -> httpx.Response:
        return httpx.request(method, self.url(path), headers={**self.keys[who], **headers}, json=body, timeout=120)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def school(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[School]:
    env = {"FLEXI_AUTH": "on", "FLEXI_ADMINS": "t-boss"}
    url = None
    if request.param == "postgresql":
        pg = request.getfixturevalue("postgres_server")
        url = env["FLEXI_DATABASE_URL"] = pg.url(pg.create_database())
    srv = start_server(tmp_path_factory.mktemp(f"templates-{request.param}") / "home", env)
    db = ServerDB(srv.home, url)
    ids = {name: db.add_user(name, role=role, locale="en") for name, role in (
        ("t-teacher", "teacher"), ("t-student", "student"), ("t-outsider", "student"), ("t-moodle", "service"),
        ("t-boss", "student"))}
    course = db.add_course("stats-1", {ids["t-teacher"]: "teacher", ids["t-student"]: "student"})
    keys = {name: {"Authorization": f"Bearer {db.add_key(uid)[1]}"} for name, uid in ids.items()}
    try:
        yield School(srv, db, course, keys)
    finally:
        db.close()
        stop_server(srv)


@pytest.fixture(scope="module")
def feedback(school: School) -> dict[str, Any]:
    fields = school.call("PUT", f"/templates/courses/{school.course}", "t-teacher",
                         {"learning_objectives": "Streuungsmaße erklären"})
    assert fields.status_code == 200 and fields.json()["learning_objectives"] == "Streuungsmaße erklären"
    r = school.call("POST", "/templates", "t-teacher", {
        "course_id": school.course, "name": "Aufsatz-Feedback", "description": "Rückmeldung zu einem Aufsatz",
        "instructions": "Give {{hints}} short hints on [essay] for level {{level}}. Goals: {{goals}}.",
        "parameters": PARAMS, "model": MODEL, "options": FEW})
    assert r.status_code == 201, r.text
    return r.json()


def _lines(r: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in r.text.splitlines() if line]


def test_teacher_creates_a_versioned_template(school: School, feedback: dict[str, Any]) -> None:
    assert feedback["slug"] == "aufsatz-feedback" and feedback["model_name"] == "template/aufsatz-feedback"
    assert feedback["version"] == 1 and feedback["can_edit"] is True and feedback["instructions"].startswith("Give")
    assert feedback["courses"] == [school.course] and feedback["options"] == FEW
    assert feedback["parameters"][1] == {"name": "level", "type": "enum", "values": ["A1", "B2", "C1"], "label": "",
                                         "description": "", "required": True}
    assert feedback["course"]["learning_objectives"] == "Streuungsmaße erklären"
    seen = school.call("GET", "/templates", "t-student").json()["templates"]
    assert [t["slug"] for t in seen] == ["aufsatz-feedback"] and seen[0]["instructions"] is None  # hidden from runners
    assert school.call("GET", f"/templates/{feedback['id']}", "t-student").json()["slug"] == "aufsatz-feedback"
    assert school.call("GET", "/templates", "t-outsider").json()["templates"] == []
    assert school.call("GET", "/templates/aufsatz-feedback", "t-outsider").status_code == 404
    assert school.call("POST", "/templates", "t-student", {"course_id": school.course, "name": "x", "instructions": "x",
                                                           "model": MODEL}).status_code == 403
    assert school.call("PUT", "/templates/aufsatz-feedback", "t-student", {"name": "mine"}).status_code == 403


def test_run_answers_like_api_chat_and_is_accounted_per_version(school: School, feedback: dict[str, Any]) -> None:
    done = school.call("POST", "/templates/aufsatz-feedback/run", "t-student", {"parameters": GOOD, "stream": False})
    assert done.status_code == 200, done.text
    assert done.headers["x-flexi-template-version"] == "1"
    body = done.json()
    plain = school.call("POST", "/api/chat", "t-student", {"model": MODEL, "stream": False, "options": FEW,
                                                           "messages": [{"role": "user", "content": "Hi"}]}).json()
    assert set(body) == set(plain) and body["model"] == "template/aufsatz-feedback@1"
    assert body["done"] is True and 1 <= body["eval_count"] <= FEW["num_predict"]  # the template's options
    streamed = school.call("POST", f"/templates/{feedback['id']}/run", "t-student", {"parameters": GOOD})
    assert streamed.headers["content-type"].startswith("application/x-ndjson")
    assert _lines(streamed)[-1]["done"] is True
    records = [r for r in school.db.wait_usage("t-student", 3) if r.template_id is not None]
    assert len(records) == 2
    assert all(r.template_id == feedback["id"] and r.template_version == 1 and r.course_id == school.course
               and r.endpoint == "/templates/{id}/run" and r.status == "ok" for r in records)


@pytest.mark.parametrize(("parameters", "param", "words"), [
    ({**GOOD, "hints": "2"}, "hints", "must be a whole number"),
    ({**GOOD, "hints": 9}, "hints", "between 1 and 3"),
    ({**GOOD, "essay": "x" * 201}, "essay", "too long: 201 characters"),
    ({**GOOD, "level": "Z9"}, "level", "one of: A1, B2, C1"),
    ({**GOOD, "tone": "rude"}, "tone", "unknown parameter: tone"),
    ({"level": "B2"}, "essay", "essay is required"),
    ({**GOOD, "goals": "anything"}, "goals", "taken from the course"),
])
def test_bad_parameters_are_a_400_naming_them(school: School, feedback: dict[str, Any], parameters: dict[str, Any],
                                              param: str, words: str) -> None:
    r = school.call("POST", "/templates/aufsatz-feedback/run", "t-student", {"parameters": parameters, "stream": False})
    assert r.status_code == 400, r.text
    assert words in r.json()["error"] and param in r.json()["error"]


def test_errors_in_german_and_through_the_openai_dialect(school: School, feedback: dict[str, Any]) -> None:
    r = school.call("POST", "/templates/aufsatz-feedback/run", "t-student", {"parameters": {**GOOD, "hints": 0}},
                    **{"Accept-Language": "de"})
    assert r.status_code == 400 and r.json()["error"] == "der Parameter hints muss zwischen 1 und 3 liegen"
    r = school.call("POST", "/v1/chat/completions", "t-student", {
        "model": "template/aufsatz-feedback", "messages": [{"role": "user", "content": json.dumps({"level": "B2"})}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "parameters.essay"
    r = school.call("POST", "/api/chat", "t-student", {"model": "template/aufsatz-feedback", "stream": False,
                                                       "messages": [{"role": "user", "content": "free text"}]})
    assert r.status_code == 400 and "JSON object" in r.json()["error"]


def test_editing_adds_a_version_and_old_ones_stay_readable_and_runnable(school: School,
                                                                         feedback: dict[str, Any]) -> None:
    same = school.call("PUT", "/templates/aufsatz-feedback", "t-teacher", {"name": "Aufsatz-Feedback"})
    assert same.json()["version"] == 1  # nothing changed: no new version
    r = school.call("PUT", "/templates/aufsatz-feedback", "t-teacher",
                    {"instructions": "Give {{hints}} hints on [essay] ({{level}}).", "roles": ["service"]})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["roles"] == ["service"]
    versions = school.call("GET", "/templates/aufsatz-feedback/versions", "t-teacher").json()
    assert versions["current"] == 2 and [v["version"] for v in versions["versions"]] == [2, 1]
    assert versions["versions"][1]["instructions"].startswith("Give {{hints}} short hints")
    old = school.call("GET", "/templates/aufsatz-feedback/versions/1", "t-student").json()
    assert old["version"] == 1 and old["instructions"] is None and old["parameters"][0]["name"] == "essay"
    assert school.call("GET", "/templates/aufsatz-feedback/versions/7", "t-teacher").status_code == 404
    ran = school.call("POST", "/templates/aufsatz-feedback/run", "t-teacher",
                      {"parameters": GOOD, "stream": False, "version": 1})
    assert ran.status_code == 200 and ran.headers["x-flexi-template-version"] == "1"
    (record,) = [r for r in school.db.wait_usage("t-teacher", 1) if r.template_id is not None]
    assert record.template_version == 1


def test_a_template_is_a_model_in_both_dialects(school: School, feedback: dict[str, Any]) -> None:
    """A Moodle site's key (role `service`, allowed by the template's roles) runs `template/<slug>` with the
    official clients: the user message carries the parameters as JSON; billed to the template's course."""
    import ollama
    import openai

    school.call("PUT", "/templates/aufsatz-feedback", "t-teacher", {"roles": ["service"]})
    key = school.keys["t-moodle"]["Authorization"].removeprefix("Bearer ")
    name = "template/aufsatz-feedback"
    assert name in {m["name"] for m in school.call("GET", "/api/tags", "t-moodle").json()["models"]}
    assert name in {m["id"] for m in school.call("GET", "/v1/models", "t-moodle").json()["data"]}
    assert name not in {m["name"] for m in school.call("GET", "/api/tags", "t-outsider").json()["models"]}
    client = ollama.Client(host=school.srv.url, headers={"Authorization": f"Bearer {key}"})
    chat = client.chat(model=name, messages=[{"role": "system", "content": "You are a pirate."},
                                             {"role": "user", "content": json.dumps(GOOD)}],
                       options={"num_predict": 40})
    assert chat.model == name and chat.message.content
    assert chat.eval_count is not None and chat.eval_count <= FEW["num_predict"]  # the teacher's options win
    gen = client.generate(model=name, prompt=json.dumps(GOOD))
    assert gen.model == name and gen.eval_count is not None and gen.eval_count <= FEW["num_predict"]
    oa = openai.OpenAI(base_url=school.srv.url + "/v1", api_key=key)
    done = oa.chat.completions.create(model=name, messages=[{"role": "user", "content": json.dumps(GOOD)}])
    assert done.model == name and done.choices[0].message.content is not None
    text = oa.completions.create(model=name, prompt=json.dumps(GOOD))
    assert text.choices[0].text is not None and text.usage is not None and text.usage.completion_tokens <= 4
    with pytest.raises(openai.BadRequestError) as refused:
        oa.chat.completions.create(model=name, messages=[{"role": "user", "content": json.dumps({**GOOD, "x": 1})}])
    assert "unknown parameter: x" in str(refused.value)
    records = [r for r in school.db.wait_usage("t-moodle", 5) if r.status == "ok"]
    assert len(records) == 4
    assert all(r.template_id == feedback["id"] and r.template_version == 2 and r.course_id == school.course
               for r in records)
    assert {r.endpoint for r in records} == {"/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions"}
    outsider = school.call("POST", "/api/chat", "t-outsider", {"model": name, "stream": False,
                                                               "messages": [{"role": "user", "content": "{}"}]})
    assert outsider.status_code == 404  # like a model that does not exist


def test_admin_usage_groups_by_template(school: School, feedback: dict[str, Any]) -> None:
    rows = school.call("GET", "/admin/usage?by=template", "t-boss").json()["rows"]
    (row,) = rows
    assert row["template"] == "aufsatz-feedback" and row["requests"] >= 5 and row["ok"] >= 5


def test_disable_and_delete(school: School) -> None:
    r = school.call("POST", "/templates", "t-teacher", {"course_id": school.course, "name": "Kurz", "slug": "kurz",
                                                        "instructions": "Summarize [text].", "model": MODEL,
                                                        "parameters": [{"name": "text", "type": "string"}],
                                                        "options": FEW})
    assert r.status_code == 201
    taken = school.call("POST", "/templates", "t-teacher", {"course_id": school.course, "name": "K", "slug": "kurz",
                                                            "instructions": "x", "model": MODEL})
    assert taken.status_code == 409
    # a template whose only parameter is a string takes plain text as that parameter (plugins with fixed prompts)
    plain = school.call("POST", "/api/chat", "t-student", {"model": "template/kurz", "stream": False,
                                                           "messages": [{"role": "user", "content": "Varianz ist …"}]})
    assert plain.status_code == 200, plain.text
    assert school.call("PUT", "/templates/kurz", "t-teacher", {"disabled": True}).json()["version"] == 1
    assert school.call("POST", "/templates/kurz/run", "t-student", {"parameters": {"text": "x"}}).status_code == 404
    assert school.call("POST", "/templates/kurz/run", "t-teacher", {"parameters": {"text": "x"}}).status_code == 403
    assert school.call("DELETE", "/templates/kurz", "t-student").status_code == 404
    assert school.call("DELETE", "/templates/kurz", "t-teacher").status_code == 204
    assert school.call("GET", "/templates/kurz", "t-teacher").status_code == 404
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        kept = [r for r in school.db.usage(school.db.pseudonym("t-student"))
                if r.endpoint == "/api/chat" and r.template_version and r.status != "running"]
        if kept:
            break
        time.sleep(0.1)
    (record,) = kept
    assert record.template_id is None and record.template_version == 1  # the numbers stay, unlinked


def test_a_template_on_an_alias_follows_it_and_takes_no_tools(school: School) -> None:
    """A template naming an admin's alias keeps the alias (not today's target), so it follows the alias; and a
    run refuses what would enter its prompt besides the parameters (tools, formats, images)."""
    assert school.call("POST", "/admin/aliases", "t-boss", {"name": "course-gpt", "target": MODEL}).status_code == 201
    r = school.call("POST", "/templates", "t-teacher", {
        "course_id": school.course, "name": "Alias", "slug": "on-alias", "instructions": "Summarize [text].",
        "model": "Course-GPT", "parameters": [{"name": "text", "type": "string"}], "options": FEW})
    assert r.status_code == 201, r.text
    assert r.json()["model"] == "course-gpt"
    chat = {"model": "template/on-alias", "stream": False, "messages": [{"role": "user", "content": "Varianz"}]}
    assert school.call("POST", "/api/chat", "t-student", chat).status_code == 200
    refused = school.call("POST", "/api/chat", "t-student", {**chat, "format": "json"}, **{"Accept-Language": "de"})
    assert refused.status_code == 400 and "format kann nicht mitgeschickt werden" in refused.json()["error"]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    refused = school.call("POST", "/v1/chat/completions", "t-student", {**chat, "tools": tools})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tools"
    assert school.call("DELETE", "/admin/aliases/course-gpt", "t-boss").status_code == 204
    gone = school.call("POST", "/api/chat", "t-student", chat)
    assert gone.status_code == 404, gone.text  # it followed the alias: without it, the template's model is gone
    assert school.call("DELETE", "/templates/on-alias", "t-teacher").status_code == 204
