"""Measurements stored with the model through a real server with FLEXI_AUTH=on: `flexi reports save` and the
REST API store a report per model; students see the newest summary in `/ui/models` (the picker); only
admins store, list or delete; a report naming a model the server lacks is refused whole; a model replaced
under its name shows no figures of the old file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.campus.test_admin_api import admin_and_student_keys
from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

BENCH_FILE = Path(__file__).parents[2] / "docs/models/smollm2-135m-bench/bench.json"
SAFETY = {"tool": "flexi safety", "machine": {"cpu_cores": 2}, "parameters": {"probes": "quick"},
          "results": [{"model": MODEL, "pass_rate": 0.8,
                       "categories": {"encoding": {"passed": 4, "total": 5, "pass_rate": 0.8}}, "probes": []}]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, str]]:
    home = tmp_path_factory.mktemp("reports") / "home"
    home.mkdir()
    admin_key, student_key = admin_and_student_keys(home, "admin,inference,manage")
    srv = start_server(home, {"FLEXI_AUTH": "on"})
    try:
        yield srv, admin_key, student_key
    finally:
        stop_server(srv)


def _call(srv: RunningServer, key: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, srv.url + path, json=body, timeout=30,
                         headers={"Authorization": f"Bearer {key}", "Accept-Language": "en"})


def _measured(srv: RunningServer, key: str) -> dict[str, Any]:
    models = _call(srv, key, "GET", "/ui/models").json()["models"]
    return next(m for m in models if m["name"] == MODEL)["measured"]


def _cli(srv: RunningServer, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEXI_HOST": srv.url, "FLEXI_API_KEY": key, "LANG": "C"}
    return subprocess.run([sys.executable, "-m", "flexi", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_stored_reports_reach_the_picker_and_stay_admin_only(site: tuple[RunningServer, str, str]) -> None:
    srv, admin, student = site
    saved = _cli(srv, admin, "reports", "save", str(BENCH_FILE))
    assert saved.returncode == 0 and MODEL in saved.stderr, saved.stderr
    r = _call(srv, admin, "POST", "/admin/model-reports", SAFETY)
    assert r.status_code == 201, r.text
    (stored,) = r.json()["saved"]
    assert stored["kind"] == "safety" and stored["summary"] == {"pass_rate": 0.8, "categories": {"encoding": 0.8}}

    measured = _measured(srv, student)  # what a student's model picker shows
    assert measured["safety"]["summary"]["pass_rate"] == 0.8
    bench_row = json.loads(BENCH_FILE.read_text())["results"][0]["rows"][0]
    assert measured["bench"]["summary"]["tg_tokens_per_s"] == pytest.approx(bench_row["tg_tokens_per_s"])

    for method, path, body in (("POST", "/admin/model-reports", SAFETY), ("GET", "/admin/model-reports", None),
                               ("DELETE", f"/admin/model-reports/{stored['id']}", None)):
        assert _call(srv, student, method, path, body).status_code == 403
    full = _call(srv, admin, "GET", f"/admin/model-reports/{stored['id']}").json()
    assert full["report"]["machine"] == {"cpu_cores": 2} and full["report"]["result"]["pass_rate"] == 0.8
    listed = _cli(srv, admin, "reports", "list", "--latest", "--json")
    assert listed.returncode == 0 and {r["kind"] for r in json.loads(listed.stdout)} == {"bench", "safety"}
    odd = _cli(srv, admin, "reports", "list", "--model", f"{MODEL}&kind=bench", "--json")  # a name is one value
    assert odd.returncode == 0 and json.loads(odd.stdout) == []

    assert _cli(srv, admin, "reports", "rm", str(stored["id"])).returncode == 0
    assert "safety" not in _measured(srv, student)
    assert _call(srv, admin, "GET", f"/admin/model-reports/{stored['id']}").status_code == 404


def test_bad_uploads_are_refused_and_store_nothing(site: tuple[RunningServer, str, str], tmp_path: Path) -> None:
    srv, admin, _ = site
    before = len(_call(srv, admin, "GET", "/admin/model-reports").json()["reports"])
    two = {**SAFETY, "results": [SAFETY["results"][0], {**SAFETY["results"][0], "model": "no-such-model:1"}]}
    r = _call(srv, admin, "POST", "/admin/model-reports", two)
    assert r.status_code == 404 and "no-such-model" in r.text
    for body in ({**SAFETY, "tool": "flexi nonsense"}, {**SAFETY, "results": []}, {"tool": "flexi safety"},
                 {**SAFETY, "results": [{**SAFETY["results"][0], "note": "a\u0000b"}]}):
        r = _call(srv, admin, "POST", "/admin/model-reports", body)
        assert r.status_code in (400, 422) and "Traceback" not in r.text, r.text
    assert _call(srv, admin, "GET", "/admin/model-reports/abc").status_code in (400, 422)
    assert _call(srv, admin, "DELETE", f"/admin/model-reports/{2**40}").status_code == 404
    assert len(_call(srv, admin, "GET", "/admin/model-reports").json()["reports"]) == before
    bad = tmp_path / "bad.json"
    bad.write_text('{"tool": "something else", "results": []}')
    out = _cli(srv, admin, "reports", "save", str(bad))
    assert out.returncode != 0 and "not a report" in out.stderr + out.stdout


def test_a_replaced_model_starts_without_figures(site: tuple[RunningServer, str, str]) -> None:
    srv, admin, student = site
    r = _call(srv, admin, "POST", "/api/create", {"model": "replaced:1", "from": MODEL, "stream": False})
    assert r.status_code == 200, r.text
    r = _call(srv, admin, "POST", "/admin/model-reports", {**SAFETY, "results": [{**SAFETY["results"][0], "model": "replaced:1"}]})
    assert r.status_code == 201, r.text
    cards = {m["name"]: m for m in _call(srv, student, "GET", "/ui/models").json()["models"]}
    assert "safety" in cards["replaced:1"]["measured"]
    r = _call(srv, admin, "POST", "/api/create", {"model": "replaced:1", "from": MODEL, "system": "Answer briefly.",
                                                  "stream": False})
    assert r.status_code == 200, r.text
    cards = {m["name"]: m for m in _call(srv, student, "GET", "/ui/models").json()["models"]}
    assert cards["replaced:1"]["measured"] == {}


def test_recommend_reads_the_stored_reports(site: tuple[RunningServer, str, str], tmp_path: Path) -> None:
    """`flexi recommend --stored` combines what the server holds with the local catalogue and planner."""
    srv, admin, _ = site
    assert _cli(srv, admin, "reports", "save", str(BENCH_FILE)).returncode == 0
    evaluated = {"tool": "flexi eval", "finished_at": "2026-12-03T20:00:00+00:00",
                 "results": [{"model": MODEL, "scores": {"flexi_arc_easy": {"score": 0.4, "metric": "acc", "n": 20,
                                                                            "language": "en", "stderr": None}},
                              "average": 0.4, "average_de": None, "tokens_per_s": 50.0}]}
    assert _call(srv, admin, "POST", "/admin/model-reports", evaluated).status_code == 201
    env = {**os.environ, "FLEXI_HOST": srv.url, "FLEXI_API_KEY": admin, "LANG": "C", "FLEXI_HOME": str(srv.home)}
    out = subprocess.run([sys.executable, "-m", "flexi", "recommend", "--stored", "--out", str(tmp_path), "--json"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "selection.json").read_text())
    (mine,) = [r for r in doc["results"] if r["model"] == MODEL]
    assert mine["quality"]["average"] == 0.4 and mine["speed"]["tg_tokens_per_s"] > 0, mine
    assert doc["recommendations"]["essay_feedback"]["model"] == MODEL  # quality is measured now
    assert {s["tool"] for s in mine["sources"]} == {"flexi bench", "flexi eval"}
    assert all("stored report" in s["source"] for s in mine["sources"])
    student = subprocess.run([sys.executable, "-m", "flexi", "recommend", "--stored", "--out", str(tmp_path)],
                             env={**env, "FLEXI_API_KEY": site[2]}, capture_output=True, text=True, timeout=60)
    assert student.returncode != 0 and "Traceback" not in student.stderr
