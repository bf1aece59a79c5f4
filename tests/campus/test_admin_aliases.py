"""Model aliases and the Azure OpenAI routes on a real server with FLEXI_AUTH=on.

One alias comes from config.toml (read-only); admins add more through `/admin/aliases` and `flexi alias`.
An alias follows its target (resolved per request), its target's policy applies (a student never reaches a
forbidden model through an alias: it is invisible and a 404, like a missing model), and usage records name
the real model. The Azure routes answer in Azure's error shape: 401 without a key, 400 for a deployment
with path characters, DeploymentNotFound for an unknown or forbidden one, 429 with Retry-After."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.access_helpers import ServerDB
from tests.campus.test_admin_api import admin_and_student_keys
from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

SECRET = "alias-secret"  # a model only admins may use (policy)
SHORT = "alias-short"  # a second real model: the target an alias is moved to
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@dataclass
class Site:
    srv: RunningServer
    http: httpx.Client
    admin_key: str
    user_key: str

    def call(self, method: str, path: str, key: str | None = None, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.admin_key}", "Accept-Language": "en",
                   **dict(kwargs.pop("headers", {}))}  # type: ignore[call-overload]
        return self.http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]

    def azure(self, deployment: str, key: str | None, body: dict[str, object] | None = None,
              query: str = "?api-version=2024-06-01", operation: str = "chat/completions", **headers: str) -> httpx.Response:
        sent = {"Content-Type": "application/json", "Accept-Language": "en", **headers}
        if key is not None:
            sent["api-key"] = key
        return self.http.post(f"/openai/deployments/{deployment}/{operation}{query}", json=body or CHAT, headers=sent)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("aliases") / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[aliases]\n"cfg-model" = "{MODEL}"\n')
    admin_key, student_key = admin_and_student_keys(home, "admin,inference,manage")
    srv = start_server(home, {"FLEXI_AUTH": "on"})
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            s = Site(srv, http, admin_key, student_key)
            for name, params in ((SECRET, {}), (SHORT, {"num_predict": 1})):
                r = s.call("POST", "/api/create", json={"model": name, "from": MODEL, "stream": False, "parameters": params})
                assert r.status_code == 200, r.text
            r = s.call("POST", "/admin/policies", json={"pattern": SECRET, "allowed_roles": ["admin"]})
            assert r.status_code == 201, r.text
            yield s
    finally:
        stop_server(srv)


def _names(site: Site, key: str) -> tuple[set[str], set[str]]:
    tags = {m["name"] for m in site.call("GET", "/api/tags", key).json()["models"]}
    ids = {m["id"] for m in site.call("GET", "/v1/models", key).json()["data"]}
    return tags, ids


def test_config_alias_is_listed_used_and_read_only(site: Site) -> None:
    listed = {a["name"]: a for a in site.call("GET", "/admin/aliases").json()["aliases"]}
    assert listed["cfg-model"] == {"name": "cfg-model", "target": MODEL, "source": "config", "available": True}
    for key in (site.admin_key, site.user_key):
        tags, ids = _names(site, key)
        assert "cfg-model" in tags and "cfg-model" in ids
    r = site.call("POST", "/v1/chat/completions", site.user_key, json={"model": "cfg-model", **CHAT})
    assert r.status_code == 200 and r.json()["model"] == "cfg-model"
    assert site.call("DELETE", "/admin/aliases/cfg-model").status_code == 409
    assert site.call("PUT", "/admin/aliases/cfg-model", json={"target": SHORT}).status_code == 409


def test_add_follow_and_remove_without_restart(site: Site) -> None:
    r = site.call("POST", "/admin/aliases", json={"name": "gpt-4o", "target": MODEL})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "gpt-4o", "target": MODEL, "source": "admin", "available": True}
    assert site.call("POST", "/v1/chat/completions", site.user_key, json={"model": "GPT-4o", **CHAT}).status_code == 200
    chat = site.call("POST", "/api/chat", site.user_key, json={"model": "gpt-4o:latest", "stream": False,
                                                                 "messages": CHAT["messages"], "options": {"num_predict": 2}})
    assert chat.status_code == 200, chat.text
    db = ServerDB(site.srv.home)
    try:  # usage records name the real model
        records = db.wait_usage("stud", 3)
        assert {r.model for r in records} == {MODEL}
    finally:
        db.close()
    # follows its target: moved to SHORT (num_predict 1), /api/show and answers change at once
    assert site.call("PUT", "/admin/aliases/gpt-4o", json={"target": SHORT}).status_code == 200
    show = site.call("POST", "/api/show", site.user_key, json={"model": "gpt-4o"})
    assert show.status_code == 200 and "num_predict" in show.json()["parameters"]
    one = site.call("POST", "/v1/chat/completions", site.user_key, json={"model": "gpt-4o", "messages": CHAT["messages"]})
    assert one.json()["usage"]["completion_tokens"] == 1
    assert site.call("DELETE", "/admin/aliases/gpt-4o").status_code == 204
    assert "gpt-4o" not in _names(site, site.user_key)[1]
    gone = site.call("POST", "/v1/chat/completions", site.user_key, json={"model": "gpt-4o", **CHAT})
    assert gone.status_code == 404
    assert site.call("DELETE", "/admin/aliases/gpt-4o").status_code == 404
    # deleting a model by an alias's name never deletes its target
    assert site.call("POST", "/admin/aliases", json={"name": "keep-me", "target": SHORT}).status_code == 201
    assert site.call("DELETE", "/api/delete", json={"model": "keep-me"}).status_code == 404
    assert site.call("POST", "/api/show", json={"model": SHORT}).status_code == 200
    assert site.call("DELETE", "/admin/aliases/keep-me").status_code == 204


def test_alias_never_opens_a_forbidden_model(site: Site) -> None:
    assert site.call("POST", "/admin/aliases", json={"name": "gpt-4o-mini", "target": SECRET}).status_code == 201
    try:
        tags, ids = _names(site, site.user_key)
        assert "gpt-4o-mini" not in tags and "gpt-4o-mini" not in ids
        assert "gpt-4o-mini" in _names(site, site.admin_key)[1]
        for path, body in (("/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}),
                           ("/api/show", {"model": "gpt-4o-mini"}), ("/v1/embeddings", {"model": "gpt-4o-mini", "input": "x"})):
            r = site.call("POST", path, site.user_key, json=body)
            assert r.status_code == 404, (path, r.text)
            assert SECRET not in r.text  # the target is not revealed
        assert site.call("GET", "/v1/models/gpt-4o-mini", site.user_key).status_code == 404
        r = site.azure("gpt-4o-mini", site.user_key)
        assert r.status_code == 404 and r.json()["error"]["code"] == "DeploymentNotFound"
        assert SECRET not in r.text
        assert site.azure("gpt-4o-mini", site.admin_key).status_code == 200
    finally:
        site.call("DELETE", "/admin/aliases/gpt-4o-mini")


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"name": MODEL, "target": SHORT}, 409, "is a model already"),
    ({"name": "gpt-3.5-turbo", "target": "no-such-model"}, 400, "not found"),
    ({"name": "gpt-3.5-turbo", "target": "cfg-model"}, 400, "alias chains"),
    ({"name": "loop", "target": "loop"}, 400, "itself"),
    ({"name": "bad/../name", "target": MODEL}, 400, "not a valid model name"),
    ({"name": "x", "target": MODEL, "extra": 1}, 422, "extra"),
])
def test_bad_aliases_refused(site: Site, body: dict[str, object], status: int, needle: str) -> None:
    r = site.call("POST", "/admin/aliases", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


def test_alias_errors_in_german_and_no_chain_onto_an_alias(site: Site) -> None:
    assert site.call("POST", "/admin/aliases", json={"name": "first", "target": MODEL}).status_code == 201
    try:
        r = site.call("POST", "/admin/aliases", json={"name": "first", "target": MODEL}, headers={"Accept-Language": "de"})
        assert r.status_code == 409 and "existiert bereits" in r.json()["error"]
        r = site.call("POST", "/admin/aliases", json={"name": "second", "target": "first"})
        assert r.status_code == 400 and "alias chains" in r.json()["error"]
        assert site.call("POST", "/admin/aliases", json={"name": "x", "target": MODEL}, key=site.user_key).status_code == 403
    finally:
        site.call("DELETE", "/admin/aliases/first")


def test_cli_alias_add_list_rm(site: Site) -> None:
    def run(*args: str, lang: str = "C") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FLEXI_HOST": site.srv.host, "FLEXI_API_KEY": site.admin_key, "LANG": lang}
        return subprocess.run([sys.executable, "-m", "flexi", "alias", *args], env=env, capture_output=True,
                              text=True, timeout=60, check=False)

    added = run("add", "llama3.3", MODEL)
    assert added.returncode == 0 and "llama3.3" in added.stdout, added.stderr
    listed = run("list")
    assert "llama3.3" in listed.stdout and "cfg-model" in listed.stdout and "config" in listed.stdout
    assert json.loads(run("list", "--json").stdout)
    twice = run("add", "llama3.3", MODEL, lang="de_DE.UTF-8")
    assert twice.returncode != 0 and "existiert bereits" in twice.stderr
    moved = run("add", "llama3.3", SHORT, "--replace")
    assert moved.returncode == 0 and SHORT in moved.stdout
    removed = run("rm", "llama3.3", lang="de_DE.UTF-8")
    assert removed.returncode == 0 and "entfernt" in removed.stdout
    assert run("rm", "llama3.3").returncode != 0


def test_azure_needs_a_key(site: Site) -> None:
    r = site.azure(MODEL.split(":")[0], None)
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "401" and error["message"]
    assert site.azure(MODEL.split(":")[0], "flexi-wrong-key").status_code == 401
    ok = site.azure(MODEL, site.user_key)
    assert ok.status_code == 200, ok.text
    db = ServerDB(site.srv.home)
    try:  # the usage record names the route, not the (client-chosen, unbounded) deployment
        deadline = time.monotonic() + 15
        while not (azure := [r for r in db.usage(db.pseudonym("stud")) if r.endpoint.startswith("/openai/")]):
            assert time.monotonic() < deadline, "no usage record of the Azure request"
            time.sleep(0.1)
        assert {r.endpoint for r in azure} == {"/openai/deployments/{deployment}/chat/completions"}
        assert {r.model for r in azure} == {MODEL}
    finally:
        db.close()


@pytest.mark.parametrize("deployment", ["a..b", "a%2Fb", "a%2fb", "a%5Cb", "a%00b", "a%0Ab", "a/b", "%2E%2E"])
def test_azure_deployment_with_path_characters_is_400(site: Site, deployment: str) -> None:
    """(A bare `..` segment never arrives: clients, curl included, remove dot segments before sending.)"""
    r = site.azure(deployment, site.user_key)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and "deployment" in error["message"]
    german = site.azure(deployment, site.user_key, **{"Accept-Language": "de"})
    assert "Deployment-Name" in german.json()["error"]["message"]


def test_azure_unknown_deployment_and_api_version(site: Site) -> None:
    r = site.azure("gpt-5", site.user_key)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "DeploymentNotFound" and "gpt-5" in r.json()["error"]["message"]
    missing = site.azure(MODEL, site.user_key, query="")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "404"
    assert "api-version" in missing.json()["error"]["message"]
    bad = site.azure(MODEL, site.user_key, query="?api-version=latest")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"
    bad_body = site.azure(MODEL, site.user_key, body={"messages": "nope"})
    assert bad_body.status_code == 400 and bad_body.json()["error"]["param"] == "messages"


def test_azure_429_has_retry_after(site: Site) -> None:
    r = site.call("PUT", "/admin/quotas/role/student", json={"requests_per_minute": 1})
    assert r.status_code == 200, r.text
    try:
        first = site.azure(MODEL, site.user_key)
        second = site.azure(MODEL, site.user_key)
        refused = second if second.status_code == 429 else site.azure(MODEL, site.user_key)
        assert first.status_code in (200, 429) and refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "429" and refused.json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) >= 1
    finally:
        site.call("PUT", "/admin/quotas/role/student", json={"requests_per_minute": None})


def test_a_model_created_later_under_an_alias_name_wins(site: Site) -> None:
    assert site.call("POST", "/admin/aliases", json={"name": "later", "target": MODEL}).status_code == 201
    try:
        made = site.call("POST", "/api/create", json={"model": "later", "from": MODEL, "stream": False,
                                                      "parameters": {"num_predict": 1}})
        assert made.status_code == 200, made.text
        tags = [m["name"] for m in site.call("GET", "/api/tags").json()["models"]]
        assert tags.count("later:latest") == 1 and "later" not in tags  # listed once, as the model
        listed = {a["name"]: a for a in site.call("GET", "/admin/aliases").json()["aliases"]}
        assert listed["later"]["available"] is False
        one = site.call("POST", "/v1/chat/completions", json={"model": "later", "messages": CHAT["messages"]})
        assert one.status_code == 200 and one.json()["usage"]["completion_tokens"] == 1
    finally:
        site.call("DELETE", "/api/delete", json={"model": "later"})
        site.call("DELETE", "/admin/aliases/later")
