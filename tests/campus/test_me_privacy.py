"""A person's own data through the real server: /me, usage, export, erasure, terms;
the admin's usage and privacy routes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from flexi.db.models import UsageRecord, User
from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e
TERMS = "2026-2"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, ServerDB]]:
    home = tmp_path_factory.mktemp("privacy") / "home"
    home.mkdir(parents=True)
    (home / "terms.md").write_text("# Nutzungsbedingungen\nBitte fair nutzen.\n", encoding="utf-8")
    server = start_server(home, {"FLEXI_AUTH": "on", "FLEXI_TERMS_VERSION": TERMS, "FLEXI_USAGE_RETENTION_DAYS": "77"})
    db = ServerDB(server.home)
    yield server, db
    db.close()
    stop_server(server)


def _key(db: ServerDB, subject: str, role: str = "student") -> tuple[int, dict[str, str]]:
    uid = db.add_user(subject, role=role, locale="en")
    return uid, {"Authorization": f"Bearer {db.add_key(uid)[1]}"}


def test_me_needs_credentials_and_shows_the_caller(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    assert httpx.get(server.url + "/me").status_code == 401
    uid, auth = _key(db, "me-user")
    me = httpx.get(server.url + "/me", headers=auth).json()
    assert me["id"] == uid and me["subject"] == "me-user" and me["role"] == "student"
    assert me["terms"] == {"version": TERMS, "url": "/terms", "accepted": False, "accepted_versions": []}
    terms = httpx.get(server.url + "/terms").json()  # public
    assert terms["version"] == TERMS and "Nutzungsbedingungen" in terms["text"]


def test_own_usage_after_a_real_generation(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    uid, auth = _key(db, "usage-me")
    db.set_quota("user", uid, tokens_per_day=100000)
    r = httpx.post(server.url + "/api/generate", headers=auth, timeout=60,
                   json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}})
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        usage = httpx.get(server.url + "/me/usage", headers=auth).json()
        if usage["per_model"]:
            break
        time.sleep(0.1)
    (row,) = usage["per_model"]
    assert row["model"] == MODEL and row["requests"] == 1 and row["completion_tokens"] == r.json()["eval_count"]
    (quota,) = usage["quotas"]
    assert quota["limit"] == "tokens_per_day" and quota["applies_to"] == "user"
    assert quota["used"] == r.json()["prompt_eval_count"] + r.json()["eval_count"]
    assert quota["resets_at"].endswith("T00:00:00Z")


def _record(db: ServerDB, subject: str, tokens: int) -> None:
    with db.session() as s:
        s.add(UsageRecord(user_pseudonym=db.pseudonym(subject), model=MODEL, endpoint="/api/chat",
                          prompt_tokens=tokens, completion_tokens=1))
        s.commit()


def test_export_has_mine_and_nothing_of_others(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    _key(db, "someone-else")
    _record(db, "someone-else", 4242)
    _uid, auth = _key(db, "exporter")
    _record(db, "exporter", 17)
    r = httpx.get(server.url + "/me/export", headers=auth)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    data = r.json()
    assert data["profile"]["subject"] == "exporter" and len(data["api_keys"]) == 1
    assert [u["prompt_tokens"] for u in data["usage_records"]] == [17]
    assert data["processing"]["retention_days"]["usage_records"] == 77 and data["processing"]["terms_version"] == TERMS
    assert "someone-else" not in r.text and db.pseudonym("someone-else") not in r.text and "4242" not in r.text
    assert "secret_hash" not in r.text and "token_hash" not in r.text


def test_erase_me_needs_confirmation_then_the_key_stops_working(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    uid, auth = _key(db, "leaver")
    _record(db, "leaver", 31337)
    assert httpx.delete(server.url + "/me", headers=auth).status_code == 400
    assert httpx.delete(server.url + "/me?confirm=true", headers=auth).status_code == 204
    assert httpx.get(server.url + "/api/tags", headers=auth).status_code == 401
    assert httpx.get(server.url + "/me", headers=auth).status_code == 401
    assert db.usage(db.pseudonym("leaver")) == []
    with db.session() as s:  # the numbers stay, under a pseudonym that leads nowhere
        (kept,) = s.scalars(select(UsageRecord).where(UsageRecord.prompt_tokens == 31337)).all()
        assert kept.user_pseudonym.startswith("erased-") and s.get(User, uid) is None


def test_browser_user_must_accept_the_current_terms(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    uid = db.add_user("browser-me")
    cookie = {"Cookie": f"flexi_session={db.add_session(uid)}"}
    blocked = httpx.get(server.url + "/api/tags", headers=cookie)
    assert blocked.status_code == 403 and blocked.json()["terms_url"] == "/terms"
    me = httpx.get(server.url + "/me", headers=cookie)
    assert me.status_code == 200  # may read what to accept
    no_token = httpx.post(server.url + "/me/terms", headers=cookie, json={"version": TERMS})
    assert no_token.status_code == 403 and no_token.json()["code"] == "csrf_failed"  # cookie changes need the page's token
    cookie["X-Flexi-CSRF"] = me.json()["csrf_token"]
    wrong = httpx.post(server.url + "/me/terms", headers=cookie, json={"version": "2020-1"})
    assert wrong.status_code == 400 and TERMS in wrong.json()["error"]
    assert httpx.post(server.url + "/me/terms", headers=cookie, json={"version": TERMS, "role": "admin"}).status_code == 422
    ok = httpx.post(server.url + "/me/terms", headers=cookie, json={"version": TERMS})
    assert ok.status_code == 200 and ok.json()["version"] == TERMS
    assert httpx.get(server.url + "/api/tags", headers=cookie).status_code == 200
    assert httpx.get(server.url + "/me", headers=cookie).json()["terms"]["accepted"] is True


@pytest.mark.parametrize("value", ["' OR 1=1--", "%", "x; DROP TABLE usage_records;--", "ä\u00a0ü"])
def test_admin_usage_and_privacy_routes(srv: tuple[RunningServer, ServerDB], value: str) -> None:
    server, db = srv
    _uid, student = _key(db, f"stud-{abs(hash(value))}")
    _aid, admin = _key(db, f"admin-{abs(hash(value))}", role="admin")
    assert httpx.get(server.url + "/admin/usage", headers=student).status_code == 403
    r = httpx.get(server.url + "/admin/usage", headers=admin, params={"by": "model", "model": value, "course": value})
    assert r.status_code in (200, 400) and (r.status_code == 400 or r.json()["rows"] == [])
    assert httpx.get(server.url + "/admin/usage", headers=admin, params={"by": "nonsense"}).status_code == 400
    for by in ("user", "course", "model", "key", "day"):
        assert httpx.get(server.url + "/admin/usage", headers=admin, params={"by": by}).status_code == 200
    assert httpx.get(server.url + "/admin/privacy/export/999999", headers=admin).status_code == 404
    assert httpx.delete(server.url + "/admin/privacy/users/999999", headers=admin).status_code == 404
    assert httpx.get(server.url + "/admin/privacy/export/abc", headers=admin).status_code == 400
    report = httpx.get(server.url + "/admin/privacy/report", headers=admin)
    assert report.status_code == 200 and "| 77 days |" in report.text


def test_cli_report_reflects_configuration(srv: tuple[RunningServer, ServerDB]) -> None:
    server, _db = srv
    env = {"FLEXI_HOME": str(server.home), "FLEXI_USAGE_RETENTION_DAYS": "33", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "flexi", "privacy", "report"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "| 33 days |" in out.stdout and "Verzeichnis" in out.stdout
