"""Admin REST API and self-service keys end to end, on a real server with FLEXI_AUTH=on.

The first admin and their key are made with the CLI on the fresh home before
the server starts (as an operator would), and everything else goes through
HTTP: creating users, keys, quotas and policies, refusals (401/403/404/422),
hostile filter values that must never cause a 500 or change the database,
and full keys that must never reach the server log.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

HOSTILE = ["' OR 1=1--", "%", "_", "%25", "'; DROP TABLE users; --", "\\", "ü∂€😀", "a" * 300, '"', "NULL", "*", "\x00",
           "1 UNION SELECT secret_hash FROM api_keys"]


def cli(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEXI_HOME": str(home), "LANG": "C"}
    env.pop("FLEXI_DATABASE_URL", None)
    env.pop("FLEXI_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "flexi", *args], check=False, env=env, input=stdin, capture_output=True,
                          text=True, timeout=60)


def admin_and_student_keys(home: Path, admin_scopes: str = "admin,inference") -> tuple[str, str]:
    """Users `root` (admin) and `stud` (student) made with the CLI, and one key each: (admin key, student key)."""
    assert cli(home, "users", "add", "root", "--role", "admin").returncode == 0
    assert cli(home, "users", "add", "stud", "--role", "student").returncode == 0
    admin = cli(home, "keys", "create", "root", "--scope", admin_scopes, "--json")
    user = cli(home, "keys", "create", "stud", "--json")
    assert admin.returncode == 0 and user.returncode == 0, admin.stderr + user.stderr
    return json.loads(admin.stdout)["key"], json.loads(user.stdout)["key"]


@dataclass
class Site:
    srv: RunningServer
    http: httpx.Client
    admin_key: str
    keys: list[str]  # every full key handed out, to look for in the log

    def call(self, method: str, path: str, key: str | None = None, *, headers: dict[str, str] | None = None,
             **kwargs: object) -> httpx.Response:
        sent = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        return self.http.request(method, path, headers=sent, **kwargs)  # type: ignore[arg-type]

    def user(self, subject: str, role: str = "student") -> tuple[int, str]:
        """A user made by the admin over REST, and a key for them."""
        r = self.call("POST", "/admin/users", self.admin_key, json={"subject": subject, "role": role, "locale": "en"})
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        # scope account: these keys also manage their own keys under /me/keys
        r = self.call("POST", f"/admin/users/{uid}/keys", self.admin_key, json={"name": "e2e", "scopes": ["inference", "account"]})
        assert r.status_code == 201, r.text
        self.keys.append(r.json()["key"])
        return uid, r.json()["key"]

    def count(self, table: str) -> int:
        with sqlite3.connect(self.srv.home / "flexi.db") as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("admin") / "home"
    home.mkdir()
    made = cli(home, "users", "add", "root", "--role", "admin", "--password-stdin", stdin="a long password\n")
    assert made.returncode == 0, made.stderr
    created = cli(home, "keys", "create", "root", "--scope", "admin,inference", "--json")
    assert created.returncode == 0, created.stderr
    admin_key = json.loads(created.stdout)["key"]
    srv = start_server(home, {"FLEXI_AUTH": "on"})
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            wired = http.get("/openapi.json", headers={"Authorization": f"Bearer {admin_key}"}).json()["paths"]
            if "/admin/users" not in wired or "/me/keys" not in wired:
                pytest.fail("the server does not include flexi.campus.admin.router and flexi.campus.keys.router "
                            "(app.include_router in flexi/server/app.py)", pytrace=False)
            yield Site(srv, http, admin_key, [admin_key])
    finally:
        stop_server(srv)


def test_cli_made_first_admin_whose_key_works(site: Site) -> None:
    r = site.call("GET", "/admin/users", site.admin_key)
    assert r.status_code == 200
    assert [u["subject"] for u in r.json()["users"]][:1] == ["root"] and r.json()["users"][0]["role"] == "admin"
    assert site.call("GET", "/api/tags", site.admin_key).status_code == 200
    schema = site.call("GET", "/openapi.json", site.admin_key).json()
    assert "admin" in schema["paths"]["/admin/users"]["post"]["tags"]
    assert "/me/keys" in schema["paths"]


def test_admin_creates_user_key_quota_policy(site: Site) -> None:
    uid, key = site.user("anna")
    assert site.call("GET", "/api/tags", key).status_code == 200
    r = site.call("PUT", f"/admin/quotas/user/{uid}", site.admin_key, json={"requests_per_minute": 100, "tokens_per_day": 5000})
    assert r.status_code == 200 and r.json()["tokens_per_day"] == 5000 and r.json()["label"] == "anna"
    r = site.call("PUT", "/admin/quotas/role/student", site.admin_key, json={"tokens_per_week": 900000})
    assert r.status_code == 200
    kinds = {(q["kind"], q["label"]) for q in site.call("GET", "/admin/quotas", site.admin_key).json()["quotas"]}
    assert {("user", "anna"), ("role", "student")} <= kinds
    usage = site.call("GET", f"/admin/quotas/user/{uid}/usage", site.admin_key).json()
    assert usage["limits"]["tokens_per_day"] == 5000 and usage["used"]["tokens_per_day"] == 0
    r = site.call("POST", "/admin/policies", site.admin_key, json={"pattern": "llama3*", "allowed_roles": ["teacher"], "max_output": 256})
    assert r.status_code == 201 and r.json()["max_output"] == 256
    pid = r.json()["id"]
    assert site.call("POST", "/admin/policies", site.admin_key, json={"pattern": "llama3*"}).status_code == 409
    assert site.call("PATCH", f"/admin/policies/{pid}", site.admin_key, json={"max_output": None}).json()["max_output"] is None
    assert site.call("DELETE", f"/admin/policies/{pid}", site.admin_key).status_code == 204
    assert site.call("GET", f"/admin/policies/{pid}", site.admin_key).status_code == 404
    g = site.call("POST", "/admin/groups", site.admin_key, json={"name": "staff"}).json()
    assert site.call("PUT", f"/admin/groups/{g['id']}/members/{uid}", site.admin_key).json()["added"] is True
    c = site.call("POST", "/admin/courses", site.admin_key, json={"name": "INF-1"}).json()
    r = site.call("PUT", f"/admin/courses/{c['id']}/members/{uid}", site.admin_key, json={"role": "tutor"})
    assert r.status_code == 200 and r.json()["role"] == "tutor"
    assert site.call("GET", f"/admin/courses/{c['id']}", site.admin_key).json()["users"][0]["course_role"] == "tutor"


def test_policy_change_applies_at_once(site: Site) -> None:
    _uid, key = site.user("policy-student")
    assert MODEL in [m["name"] for m in site.call("GET", "/api/tags", key).json()["models"]]
    pid = site.call("POST", "/admin/policies", site.admin_key,
                    json={"pattern": MODEL, "allowed_roles": ["teacher"]}).json()["id"]
    try:
        assert MODEL not in [m["name"] for m in site.call("GET", "/api/tags", key).json()["models"]]
    finally:
        site.call("DELETE", f"/admin/policies/{pid}", site.admin_key)
    assert MODEL in [m["name"] for m in site.call("GET", "/api/tags", key).json()["models"]]


def test_student_key_on_admin_routes_is_403(site: Site) -> None:
    _uid, key = site.user("stud-403")
    for method, path, body in [("GET", "/admin/users", None), ("POST", "/admin/users", {"subject": "evil", "role": "admin"}),
                               ("DELETE", "/admin/keys/1", None), ("PUT", "/admin/quotas/role/student", {"tokens_per_day": 1}),
                               ("GET", "/admin/policies", None)]:
        assert site.call(method, path, key, json=body).status_code == 403, path
    assert site.call("GET", "/admin/users", site.admin_key, params={"search": "evil"}).json()["users"] == []


def test_no_credentials_is_401(site: Site) -> None:
    for method, path in [("GET", "/admin/users"), ("POST", "/admin/users"), ("GET", "/me/keys"), ("POST", "/me/keys"),
                         ("DELETE", "/me/keys/1")]:
        assert site.call(method, path).status_code == 401, path
    assert site.call("GET", "/admin/users", "' OR 1=1--").status_code == 401


def test_extra_fields_are_422_and_change_nothing(site: Site) -> None:
    uid, key = site.user("extra")
    users = site.count("users")
    r = site.call("POST", "/admin/users", site.admin_key, json={"subject": "x1", "is_superuser": True})
    assert r.status_code == 422 and "error" in r.json()
    assert site.call("PATCH", f"/admin/users/{uid}", site.admin_key, json={"role": "teacher", "user_id": 1}).status_code == 422
    assert site.call("POST", "/me/keys", key, json={"name": "k", "role": "admin"}).status_code == 422
    assert site.call("POST", "/me/keys", key, json={"name": "k", "user_id": 1}).status_code == 422
    assert site.call("POST", "/me/keys", key, json={"owner_id": 1}).status_code == 422
    assert site.call("PUT", f"/admin/quotas/user/{uid}", site.admin_key, json={"tokens_per_hour": 1}).status_code == 422
    assert site.count("users") == users
    assert site.call("GET", f"/admin/users/{uid}", site.admin_key).json()["role"] == "student"
    assert len(site.call("GET", "/me/keys", key).json()["keys"]) == 1


def test_sql_metacharacters_in_filters_never_500(site: Site) -> None:
    site.user("meta")
    before = {t: site.count(t) for t in ("users", "api_keys", "groups", "courses", "model_policies", "quotas")}
    filters = [("/admin/users", "search"), ("/admin/users", "role"), ("/admin/users", "disabled"), ("/admin/users", "limit"),
               ("/admin/users", "offset"), ("/admin/keys", "prefix"), ("/admin/keys", "state"), ("/admin/keys", "user_id"),
               ("/admin/groups", "search"), ("/admin/courses", "search"), ("/admin/policies", "search"),
               ("/admin/quotas", "kind")]
    for path, name in filters:
        for value in HOSTILE:
            r = site.call("GET", path, site.admin_key, params={name: value})
            assert r.status_code in (200, 400), (path, name, value, r.status_code, r.text)
            if r.status_code == 200 and name in ("search", "prefix"):
                body = r.json()
                listed = next(iter(v for k, v in body.items() if isinstance(v, list)))
                assert listed == [] or value in ("_", "*", "%"), (path, value, listed)
    for value in ["' OR 1=1--", "1;DROP TABLE users", "99999999999999999999", "-1", "0", "%00"]:
        for path in (f"/admin/users/{value}", f"/admin/keys/{value}", f"/admin/quotas/user/{value}",
                     f"/admin/quotas/role/{value}", f"/me/keys/{value}"):
            r = site.call("GET" if "quotas" not in path else "PUT", path, site.admin_key,
                          json={"tokens_per_day": 1} if "quotas" in path else None)
            assert r.status_code in (400, 404), (path, r.status_code, r.text)
    assert {t: site.count(t) for t in before} == before


def test_other_users_key_ids_are_404(site: Site) -> None:
    _a, key_a = site.user("owner-a")
    _b, key_b = site.user("owner-b")
    made = site.call("POST", "/me/keys", key_a, json={"name": "mine", "expires_in_days": 30})
    assert made.status_code == 201 and made.json()["scopes"] == ["inference"]
    site.keys.append(made.json()["key"])
    kid = made.json()["id"]
    for method in ("GET", "DELETE"):
        r = site.call(method, f"/me/keys/{kid}", key_b)
        missing = site.call(method, "/me/keys/987654", key_b)
        assert r.status_code == missing.status_code == 404, method
        assert r.json()["error"].replace(str(kid), "N") == missing.json()["error"].replace("987654", "N")  # alike
    assert kid not in [k["id"] for k in site.call("GET", "/me/keys", key_b).json()["keys"]]
    assert site.call("GET", "/api/tags", made.json()["key"]).status_code == 200  # B could not revoke it


def test_self_service_scopes_and_revocation(site: Site) -> None:
    _uid, key = site.user("selfie")
    for scopes in (["admin"], ["manage"], ["inference", "admin"]):
        r = site.call("POST", "/me/keys", key, json={"scopes": scopes}, headers={"Accept-Language": "de"})
        assert r.status_code == 403 and "Berechtigung" in r.json()["error"], r.text
    r = site.call("POST", "/me/keys", key, json={"name": "notebook", "scopes": ["inference"], "models": [MODEL]})
    assert r.status_code == 201, r.text
    new = r.json()
    site.keys.append(new["key"])
    assert new["key"].startswith(new["prefix"] + "_") and "only time" in new["warning"]
    listed = site.call("GET", "/me/keys", key).json()["keys"]
    assert new["prefix"] in [k["prefix"] for k in listed] and new["key"] not in json.dumps(listed)
    # a model-restricted key cannot mint a key for other models
    assert site.call("POST", "/me/keys", new["key"], json={"models": ["llama3*"]}).status_code == 403
    assert site.call("GET", "/api/tags", new["key"]).status_code == 200
    assert site.call("DELETE", f"/me/keys/{new['id']}", key).json()["state"] == "revoked"
    r = site.call("GET", "/api/tags", new["key"])
    assert r.status_code == 401 and new["key"] not in r.text


def test_disable_and_admin_revoke_take_effect(site: Site) -> None:
    uid, key = site.user("leaver")
    assert site.call("PATCH", f"/admin/users/{uid}", site.admin_key, json={"disabled": True}).json()["disabled"] is True
    assert site.call("GET", "/api/tags", key).status_code == 401
    site.call("PATCH", f"/admin/users/{uid}", site.admin_key, json={"disabled": False})
    assert site.call("GET", "/api/tags", key).status_code == 200
    kid = site.call("GET", f"/admin/users/{uid}/keys", site.admin_key).json()["keys"][0]["id"]
    assert site.call("DELETE", f"/admin/keys/{kid}", site.admin_key).json()["state"] == "revoked"
    assert site.call("GET", "/api/tags", key).status_code == 401
    assert site.call("DELETE", "/admin/keys/424242", site.admin_key).status_code == 404
    assert site.call("DELETE", f"/admin/users/{uid}", site.admin_key).status_code == 204
    assert site.call("GET", f"/admin/users/{uid}", site.admin_key).status_code == 404


def test_bad_values_are_clear_errors(site: Site) -> None:
    uid, _key = site.user("bad-values")
    for body in ({"subject": ""}, {"subject": "a b"}, {"subject": "ok1", "role": "god"}, {"subject": "ok2", "password": "short"},
                 {"subject": "ok3", "email": "no-at"}):
        r = site.call("POST", "/admin/users", site.admin_key, json=body)
        assert r.status_code in (400, 422) and r.json()["error"], body
    assert site.call("POST", "/admin/users", site.admin_key, json={"subject": "root"}).status_code == 409
    for body in ({"expires_in_days": 0}, {"expires_at": "2001-01-01"}, {"expires_at": "soon"},
                 {"expires_in_days": 3, "expires_at": "2099-01-01"}, {"scopes": ["root"]}, {"course_id": 999}):
        r = site.call("POST", f"/admin/users/{uid}/keys", site.admin_key, json=body)
        assert r.status_code in (400, 404, 422), (body, r.text)
    r = site.call("PATCH", f"/admin/users/{site.call('GET', '/admin/users', site.admin_key, params={'search': 'root'}).json()['users'][0]['id']}",
                  site.admin_key, json={"role": "student"})
    assert r.status_code == 409  # the last enabled admin stays an admin
    r = site.call("POST", "/admin/users", site.admin_key, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"error": "invalid JSON in request body"}


def test_full_keys_never_in_the_log(site: Site) -> None:
    _uid, key = site.user("logcheck")
    site.call("DELETE", f"/me/keys/{10**6}", key)
    site.call("POST", "/me/keys", key, json={"scopes": ["admin"]})
    site.call("GET", "/admin/users", key)
    site.http.get("/api/tags", headers={"x-api-key": key, "Authorization": f"Bearer {site.admin_key}"})  # conflicting
    broken = key[:-1] + ("A" if key[-1] != "A" else "B")
    site.call("GET", "/api/tags", broken)
    log = site.srv.log()
    for full in [*site.keys, broken]:
        assert full not in log
    assert "Traceback" not in log and "unhandled error" not in log  # no request of this module caused a 500


def test_admin_sets_limits_for_each_end_user_of_a_service_key(site: Site) -> None:
    """POST /admin/users/{id}/keys with end_user_limits (a Moodle site's key), then PUT /admin/quotas/enduser/{key};
    a person's key is refused, and nothing is created then."""
    service_id, _ = site.user("moodle-rest", role="service")
    r = site.call("POST", f"/admin/users/{service_id}/keys", site.admin_key,
                  json={"name": "moodle", "end_user_limits": {"tokens_per_day": 30000, "requests_per_minute": 4}})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["end_user_limits"]["tokens_per_day"] == 30000 and made["key"].startswith(made["prefix"])
    r = site.call("PUT", f"/admin/quotas/enduser/{made['id']}", site.admin_key, json={"tokens_per_week": 90000})
    assert r.status_code == 200 and r.json()["tokens_per_week"] == 90000 and r.json()["requests_per_minute"] == 4
    kinds = {(q["kind"], q["label"]) for q in site.call("GET", "/admin/quotas?kind=enduser", site.admin_key).json()["quotas"]}
    assert kinds == {("enduser", made["prefix"])}
    student_id, _ = site.user("stud-rest")
    before = site.count("api_keys")
    r = site.call("POST", f"/admin/users/{student_id}/keys", site.admin_key, json={"end_user_limits": {"tokens_per_day": 1}},
                  headers={"Accept-Language": "de"})
    assert r.status_code == 400 and site.count("api_keys") == before
    assert site.call("DELETE", f"/admin/quotas/enduser/{made['id']}", site.admin_key).status_code == 204
