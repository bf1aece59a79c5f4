"""Energy end to end: a real server (auth on) with the real model runs generations; /admin/energy and
`flexi energy` then show estimated energy attributed to that model and its course (this machine has no
GPU and no readable RAPL, so the estimate is what runs), and only admins may read it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e


@dataclass
class Site:
    srv: RunningServer
    admin: str
    student: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("energy") / "home"
    srv = start_server(home, {"FLEXI_AUTH": "on", "FLEXI_ENERGY_INTERVAL": "0.2", "FLEXI_ENERGY_IDLE_WATTS": "40",
                              "FLEXI_ENERGY_BUSY_WATTS": "140", "FLEXI_ENERGY_PRICE": "0.5"})
    db = ServerDB(home)
    root, anna = db.add_user("root", role="admin"), db.add_user("anna", role="student")
    course = db.add_course("physik-1", {anna: "student"})
    site = Site(srv, db.add_key(root, scopes=["admin", "inference"])[1], db.add_key(anna, course_id=course)[1])
    try:
        yield site
    finally:
        stop_server(srv)


def _get(site: Site, path: str, key: str) -> httpx.Response:
    return httpx.get(site.srv.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_generations_show_up_as_estimated_energy_of_their_model_and_course(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        r = httpx.post(site.srv.url + "/api/generate", headers={"Authorization": f"Bearer {site.student}"},
                       json={"model": MODEL, "prompt": "Count to twenty:", "stream": False,
                             "options": {"num_predict": 48, "temperature": 0}}, timeout=180)
        r.raise_for_status()
    r = _get(site, "/admin/energy?days=1&by=model,course", site.admin)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["sampling"] is True and report["devices"] == ["cpu"]
    rows = {(row["model"], row["course"]): row for row in report["rows"]}
    mine = rows[(MODEL, "physik-1")]
    assert mine["kwh"] > 0 and mine["estimated_kwh"] == mine["kwh"] and mine["measured_kwh"] == 0 and mine["estimated"]
    assert mine["busy_seconds"] > 0 and mine["eur"] == pytest.approx(mine["kwh"] * 0.5, abs=1e-4)
    assert ("idle", None) in rows  # the time between requests
    total = report["total"]
    assert total["kwh"] == pytest.approx(sum(row["kwh"] for row in report["rows"]), abs=1e-5)
    assert report["peaks"] and max(p["peak"] for p in report["peaks"]) >= 1
    # the stored aggregates serve `flexi energy` too (directly on the database, no server needed)
    monkeypatch.setenv("FLEXI_HOME", str(site.srv.home))
    monkeypatch.delenv("FLEXI_DATABASE_URL", raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    out = CliRunner().invoke(app, ["energy", "--days", "1", "--by", "model", "--json"])
    assert out.exit_code == 0, out.output
    by_model = {row["model"]: row for row in json.loads(out.output)["rows"]}
    assert by_model[MODEL]["kwh"] >= mine["kwh"] > 0
    table = CliRunner().invoke(app, ["energy", "--by", "model"])
    assert table.exit_code == 0 and MODEL in table.output and "estimated" in table.output
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    german = CliRunner().invoke(app, ["energy", "--by", "course"])
    assert german.exit_code == 0 and "physik-1" in german.output and "gesamt" in german.output and "geschätzt" in german.output


def test_the_power_series_and_the_dashboard_charts(site: Site) -> None:
    metrics = _get(site, "/metrics", site.admin).text
    assert 'flexi_power_watts{device="cpu",source="estimate"}' in metrics and "flexi_energy_joules_total" in metrics
    for view in ("day", "week", "model", "course", "hour"):
        r = _get(site, f"/admin/energy/chart.svg?view={view}&days=7&lang=de", site.admin)
        assert r.status_code == 200 and r.text.startswith("<svg") and "Tage" in r.text


def test_only_admins_read_energy_and_bad_windows_are_400(site: Site) -> None:
    assert _get(site, "/admin/energy", site.student).status_code == 403
    assert _get(site, "/admin/energy/chart.svg", site.student).status_code == 403
    assert httpx.get(site.srv.url + "/admin/energy", timeout=30).status_code == 401
    assert _get(site, "/admin/energy?days=0", site.admin).status_code == 400
    assert _get(site, "/admin/energy?from=2026-12-05&to=2026-12-01", site.admin).status_code == 400
    assert _get(site, "/admin/energy?by=user", site.admin).status_code == 400
    r = _get(site, "/admin/energy?from=2026-01-01&to=2026-01-02&by=day", site.admin)
    assert r.status_code == 200 and r.json()["rows"] == [] and r.json()["total"]["kwh"] == 0


def test_with_energy_off_nothing_is_sampled_or_stored(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_server(tmp_path_factory.mktemp("energy-off") / "home", {"FLEXI_ENERGY": "off"})
    try:
        httpx.post(srv.url + "/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                     "options": {"num_predict": 4}}, timeout=180).raise_for_status()
        report = httpx.get(srv.url + "/admin/energy?by=model", timeout=30).json()
        assert report["sampling"] is False and report["rows"] == [] and report["peaks"] == []
        metrics = httpx.get(srv.url + "/metrics", timeout=30).text
        assert "flexi_power_watts" not in metrics and "flexi_energy_joules" not in metrics
    finally:
        stop_server(srv)
    assert "energy sampling" not in srv.log_path.read_text()
