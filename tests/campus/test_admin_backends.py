"""`/admin/backends` and `flexi backend` end to end, on a real server with FLEXI_AUTH=on.

The server knows one backend from config.toml (read-only, on a closed port) and admins add more at run time.
An added backend points at the server itself (kind `flexi`, the admin's key as its api_key), so its model is
really served through the remote path: it appears in /api/tags, answers, and is gone after removal — without a
restart. The api_key must never come back in any answer, CLI output or the server log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.campus.test_admin_api import admin_and_student_keys
from tests.conftest import MODEL, RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.e2e

FEW = {"num_predict": 3, "temperature": 0}


@dataclass
class Site:
    srv: RunningServer
    http: httpx.Client
    admin_key: str
    user_key: str
    seen: list[str] = field(default_factory=list)  # every answer body, searched for the api key

    def call(self, method: str, path: str, key: str | None = None, **kwargs: object) -> httpx.Response:
        r = self.http.request(method, path, headers={"Authorization": f"Bearer {key or self.admin_key}"},
                              **kwargs)  # type: ignore[arg-type]
        self.seen.append(r.text)
        return r

    def tags(self) -> dict[str, dict[str, object]]:
        return {m["name"].removesuffix(":latest"): m for m in self.call("GET", "/api/tags").json()["models"]}

    def backend(self, name: str, **fields: object) -> dict[str, object]:
        return {"name": name, "url": self.srv.url, "kind": "flexi", "models": {f"{name}-model": MODEL},
                "api_key": self.admin_key, **fields}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("backends") / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'''
[[backends]]
name = "campus-gpu"
url = "http://127.0.0.1:{free_port()}/v1"
kind = "vllm"
models = {{ "gpu-model" = "meta/llama" }}
''')
    admin_key, student_key = admin_and_student_keys(home, "admin,inference")
    srv = start_server(home, {"FLEXI_AUTH": "on"})
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            yield Site(srv, http, admin_key, student_key)
    finally:
        stop_server(srv)


@pytest.fixture(autouse=True, scope="module")
def _key_never_shown(site: Site) -> Iterator[None]:
    yield
    for text in site.seen:
        assert site.admin_key not in text
    assert site.admin_key not in site.srv.log()


def test_config_backend_is_listed_read_only(site: Site) -> None:
    r = site.call("GET", "/admin/backends")
    assert r.status_code == 200
    (gpu,) = [b for b in r.json()["backends"] if b["name"] == "campus-gpu"]
    assert gpu["source"] == "config" and gpu["kind"] == "vllm" and gpu["models"] == {"gpu-model": "meta/llama"}
    assert gpu["enabled"] is True and gpu["external"] is False and gpu["api_key_set"] is False
    r = site.call("DELETE", "/admin/backends/campus-gpu")
    assert r.status_code == 409 and "configuration file" in r.json()["error"]
    assert "gpu-model" in site.tags()


def test_add_use_remove_without_restart(site: Site) -> None:
    r = site.call("POST", "/admin/backends", json=site.backend("self", max_concurrency=2))
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["source"] == "admin" and view["api_key_set"] is True and "api_key" not in view
    assert view["models"] == {"self-model": MODEL} and view["max_concurrency"] == 2 and view["enabled"] is True
    assert "self-model" in site.tags() and "external" not in site.tags()["self-model"]
    listed = {b["name"]: b for b in site.call("GET", "/admin/backends").json()["backends"]}
    assert listed["self"]["source"] == "admin" and "api_key" not in listed["self"]
    assert listed["self"]["health"]["circuit"] == "closed" and listed["self"]["health"]["in_flight"] == 0
    chat = {"model": "self-model", "messages": [{"role": "user", "content": "Hi"}], "stream": False, "options": FEW}
    answer = site.call("POST", "/api/chat", json=chat)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"]["content"] and answer.json()["eval_count"] >= 1
    v1 = site.call("POST", "/v1/chat/completions", json={"model": "self-model", "max_tokens": 3,
                                                         "messages": [{"role": "user", "content": "Hi"}]})
    assert v1.status_code == 200 and v1.json()["choices"][0]["message"]["content"]

    assert site.call("DELETE", "/admin/backends/self").status_code == 204
    assert "self-model" not in site.tags()
    gone = site.call("POST", "/api/chat", json=chat)
    assert gone.status_code == 404
    assert site.call("DELETE", "/admin/backends/self").status_code == 404
    assert site.call("GET", "/admin/backends").json()["backends"][-1]["name"] == "campus-gpu"


@pytest.mark.parametrize(("change", "field_name"), [
    ({"kind": "grpc"}, "kind"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "ftp://example.org/v1"}, "url"),
    ({"url": "http:///v1"}, "url"),
    ({"url": "http://example.org/v1?key=1"}, "url"),
    ({"url": "http://example.org/v1#x"}, "url"),
    ({"models": {}}, "models"),
    ({"models": {"Bad Name!": MODEL}}, "models"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": 1025}, "max_concurrency"),
    ({"name": "-x"}, "name"),
    ({"name": "a" * 65}, "name"),
    ({"surprise": 1}, "surprise"),
])
def test_invalid_backends_are_refused_naming_the_field(site: Site, change: dict[str, object], field_name: str) -> None:
    r = site.call("POST", "/admin/backends", json={**site.backend("bad"), **change})
    assert r.status_code == 422, r.text
    assert f'"{field_name}' in r.json()["error"]
    assert "bad" not in {b["name"] for b in site.call("GET", "/admin/backends").json()["backends"]}


def test_url_with_credentials_is_refused_without_echoing_them(site: Site) -> None:
    r = site.call("POST", "/admin/backends", json=site.backend("creds", url="http://bob:hunter2@example.org/v1"))
    assert r.status_code == 422 and '"url"' in r.json()["error"] and "credentials" in r.json()["error"]
    assert "hunter2" not in r.text


def test_external_backend_needs_consent(site: Site) -> None:
    r = site.call("POST", "/admin/backends", json=site.backend("cloud", external=True))
    assert r.status_code == 422 and "enabled" in r.json()["error"]
    r = site.call("POST", "/admin/backends", json=site.backend("cloud", external=True, enabled=False))
    assert r.status_code == 422


def test_duplicate_names_conflict(site: Site) -> None:
    assert site.call("POST", "/admin/backends", json=site.backend("twice")).status_code == 201
    try:
        r = site.call("POST", "/admin/backends", json=site.backend("TWICE"))
        assert r.status_code == 409 and "exists" in r.json()["error"]
        r = site.call("POST", "/admin/backends", json=site.backend("campus-gpu"))
        assert r.status_code == 409
    finally:
        assert site.call("DELETE", "/admin/backends/twice").status_code == 204


def test_disabled_backend_serves_nothing(site: Site) -> None:
    assert site.call("POST", "/admin/backends", json=site.backend("resting", enabled=False)).status_code == 201
    try:
        listed = {b["name"]: b for b in site.call("GET", "/admin/backends").json()["backends"]}
        assert listed["resting"]["enabled"] is False
        assert "resting-model" not in site.tags()
    finally:
        site.call("DELETE", "/admin/backends/resting")


def test_capabilities_are_stored_and_shown(site: Site) -> None:
    """An engine without tool calling is declared so: its model then refuses tools and says so in /api/show."""
    r = site.call("POST", "/admin/backends", json=site.backend("plain", capabilities=["completion"]))
    assert r.status_code == 201, r.text
    try:
        assert r.json()["capabilities"] == ["completion"]
        listed = {b["name"]: b for b in site.call("GET", "/admin/backends").json()["backends"]}
        assert listed["plain"]["capabilities"] == ["completion"]
        shown = site.call("POST", "/api/show", json={"model": "plain-model"}).json()
        assert "tools" not in shown["capabilities"] and "completion" in shown["capabilities"]
        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
        refused = site.call("POST", "/api/chat", json={"model": "plain-model", "stream": False, "tools": [tool],
                                                        "messages": [{"role": "user", "content": "Hi"}]})
        assert refused.status_code == 400 and "does not support tools" in refused.json()["error"]
        bad = site.call("POST", "/admin/backends", json=site.backend("wrong", capabilities=["telepathy"]))
        assert bad.status_code == 422 and "capabilities" in bad.text
    finally:
        site.call("DELETE", "/admin/backends/plain")


def test_non_admins_are_refused(site: Site) -> None:
    for method, path in [("GET", "/admin/backends"), ("POST", "/admin/backends"), ("DELETE", "/admin/backends/x"),
                         ("POST", "/admin/backends/campus-gpu/check")]:
        r = site.call(method, path, site.user_key, json=site.backend("sneaky") if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.text)
    assert site.http.get("/admin/backends").status_code == 401
    assert "sneaky" not in {b["name"] for b in site.call("GET", "/admin/backends").json()["backends"]}


def test_check_probes_the_engine(site: Site) -> None:
    r = site.call("POST", "/admin/backends/campus-gpu/check")
    assert r.status_code == 200 and r.json()["reachable"] is False and "unreachable" in r.json()["error"]
    models = {"half-model": MODEL, "other-model": "nonexistent:1b"}
    assert site.call("POST", "/admin/backends", json=site.backend("half", models=models)).status_code == 201
    try:
        r = site.call("POST", "/admin/backends/half/check")
        body = r.json()
        assert r.status_code == 200 and body["reachable"] is True and body["error"] is None
        assert MODEL in body["models"] and body["missing"] == ["nonexistent:1b"] and body["latency_ms"] >= 0
        assert "api_key" not in body and body["api_key_set"] is True
    finally:
        site.call("DELETE", "/admin/backends/half")
    assert site.call("POST", "/admin/backends/nothing/check").status_code == 404


def test_external_models_are_marked(site: Site) -> None:
    body = site.backend("eu-cloud", url=site.srv.url + "/v1", kind="openai", external=True, enabled=True,
                        models={"cloud-model": MODEL})
    assert site.call("POST", "/admin/backends", json=body).status_code == 201
    try:
        tags = site.tags()
        assert tags["cloud-model"]["external"] is True and "external" not in tags[MODEL]
        v1 = {m["id"].removesuffix(":latest"): m for m in site.call("GET", "/v1/models").json()["data"]}
        assert v1["cloud-model"]["external"] is True and "external" not in v1[MODEL]
        cards = {m["name"].removesuffix(":latest"): m for m in site.call("GET", "/ui/models").json()["models"]}
        assert cards["cloud-model"]["external"] is True
        notice = site.call("GET", "/ui/config").json()["privacy"]["external_backends"]
        assert notice == [{"name": "eu-cloud", "host": "127.0.0.1"}]
        report = site.call("GET", "/admin/privacy/report").text
        assert "eu-cloud" in report and "leave the university" in report and "**extern / external**" in report
        assert "campus-gpu" in report  # every backend in use is a place prompts go
        export = site.call("GET", "/admin/privacy/export/1").json()["processing"]  # GDPR Art. 15 for "root"
        assert [e["name"] for e in export["external_backends"]] == ["eu-cloud"] and "eu-cloud" in export["recipients"]
    finally:
        site.call("DELETE", "/admin/backends/eu-cloud")
    assert "cloud-model" not in site.tags()
    assert site.call("GET", "/ui/config").json()["privacy"]["external_backends"] == []
    assert "eu-cloud" not in site.call("GET", "/admin/privacy/report").text


def _flexi(site: Site, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "FLEXI_HOST": site.srv.host, "FLEXI_API_KEY": site.admin_key, "LANG": "C", **(env or {})}
    return subprocess.run([sys.executable, "-m", "flexi", "backend", *args], env=full, input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_add_list_check_rm(site: Site) -> None:
    added = _flexi(site, "add", "cli-self", "--url", site.srv.url, "--kind", "flexi", "--model", f"cli-model={MODEL}",
                   "--api-key-env", "ENGINE_KEY", "--max-concurrency", "3", env={"ENGINE_KEY": site.admin_key})
    assert added.returncode == 0, added.stderr
    assert "cli-self" in added.stdout and site.admin_key not in added.stdout + added.stderr
    assert "cli-model" in site.tags()
    listed = _flexi(site, "list")
    assert listed.returncode == 0 and "cli-self" in listed.stdout and "campus-gpu" in listed.stdout
    assert "CIRCUIT" in listed.stdout and "closed" in listed.stdout  # health: this replica's view
    as_json = {b["name"]: b for b in json.loads(_flexi(site, "list", "--json").stdout)}
    assert as_json["cli-self"]["max_concurrency"] == 3 and as_json["cli-self"]["source"] == "admin"
    assert site.admin_key not in _flexi(site, "list", "--json").stdout
    checked = _flexi(site, "check", "cli-self")
    assert checked.returncode == 0 and "reachable" in checked.stdout and MODEL in checked.stdout
    down = _flexi(site, "check", "campus-gpu")
    assert down.returncode == 1 and "unreachable" in down.stderr
    german = _flexi(site, "check", "campus-gpu", env={"LANG": "de_DE.UTF-8"})
    assert german.returncode == 1 and "nicht erreichbar" in german.stderr
    refused = _flexi(site, "rm", "campus-gpu")
    assert refused.returncode == 1 and "configuration file" in refused.stderr
    removed = _flexi(site, "rm", "cli-self")
    assert removed.returncode == 0, removed.stderr
    assert "cli-model" not in site.tags()


def test_cli_refuses_bad_input_before_sending(site: Site) -> None:
    bad_kind = _flexi(site, "add", "x", "--url", site.srv.url, "--kind", "grpc", "--model", "m")
    assert bad_kind.returncode == 1 and "unknown kind" in bad_kind.stderr
    external = _flexi(site, "add", "x", "--url", site.srv.url, "--kind", "openai", "--model", "m", "--external")
    assert external.returncode == 1 and "--enable" in external.stderr
    no_env = _flexi(site, "add", "x", "--url", site.srv.url, "--kind", "openai", "--model", "m", "--api-key-env", "UNSET_VAR_4711")
    assert no_env.returncode == 1 and "UNSET_VAR_4711" in no_env.stderr
    server_says = _flexi(site, "add", "x", "--url", "file:///etc", "--kind", "openai", "--model", "m")
    assert server_says.returncode == 1 and "url" in server_says.stderr
    prompted = _flexi(site, "add", "prompted", "--url", site.srv.url, "--kind", "flexi", "--model", f"p-model={MODEL}",
                      "--api-key-prompt", stdin=site.admin_key + "\n")
    assert prompted.returncode == 0, prompted.stderr
    assert site.admin_key not in prompted.stdout + prompted.stderr
    assert _flexi(site, "rm", "prompted").returncode == 0


def test_another_replica_follows_within_seconds(site: Site, tmp_path: Path) -> None:
    """A second Flexi on the same database sees an added backend and its removal without a restart."""
    db_url = f"sqlite:///{site.srv.home / 'flexi.db'}"
    replica = start_server(tmp_path / "replica", {"FLEXI_AUTH": "on", "FLEXI_DATABASE_URL": db_url})
    try:
        def replica_tags() -> set[str]:
            r = httpx.get(replica.url + "/api/tags", headers={"Authorization": f"Bearer {site.admin_key}"}, timeout=30)
            assert r.status_code == 200, r.text
            return {m["name"].removesuffix(":latest") for m in r.json()["models"]}

        def within(seconds: float, check: Callable[[], bool]) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if check():
                    return True
                time.sleep(0.2)
            return check()

        assert "shared-model" not in replica_tags()
        assert site.call("POST", "/admin/backends", json=site.backend("shared")).status_code == 201
        try:
            assert within(6, lambda: "shared-model" in replica_tags())
        finally:
            assert site.call("DELETE", "/admin/backends/shared").status_code == 204
        assert within(6, lambda: "shared-model" not in replica_tags())
        assert site.admin_key not in replica.log()
    finally:
        stop_server(replica)
