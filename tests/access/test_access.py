"""Campus access end to end (issue 4) on a real server with FLEXI_AUTH=on:
authentication on every route, the four header forms deciding alike, model
policy without enumeration, revocation ending open streams, quotas that hold
under 100 concurrent streams, usage records without text."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from sqlalchemy import text

from tests.access_helpers import ServerDB, fresh_minute
from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e
TERMS = "2026-1"


@dataclass
class Campus:
    srv: RunningServer
    db: ServerDB
    admin_key: str
    student_id: int
    student_key: str
    teacher_id: int
    teacher_key: str
    database: str = "sqlite"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def campus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    """One campus server per database: SQLite (one process, checks on the event loop) and
    PostgreSQL (the several-replicas setup, checks in worker threads)."""
    env = {"FLEXI_AUTH": "on", "FLEXI_TERMS_VERSION": TERMS, "FLEXI_ADMINS": "boss"}
    url = None
    if request.param == "postgresql":
        pg = request.getfixturevalue("postgres_server")
        url = pg.url(pg.create_database())
        env["FLEXI_DATABASE_URL"] = url
    srv = start_server(tmp_path_factory.mktemp(f"campus-{request.param}") / "home", env)
    db = ServerDB(srv.home, url)
    boss = db.add_user("boss", role="student")  # admin through FLEXI_ADMINS, not the stored role
    student = db.add_user("stud1", role="student", locale="en")
    teacher = db.add_user("teach1", role="teacher")
    try:
        yield Campus(srv, db, db.add_key(boss)[1], student, db.add_key(student)[1], teacher, db.add_key(teacher)[1],
                     request.param)
    finally:
        db.close()
        stop_server(srv)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def header_forms(key: str) -> list[dict[str, str]]:
    """The four ways a key may be sent (issue 4)."""
    basic = base64.b64encode(f"moodle:{key}".encode()).decode()
    return [bearer(key), {"x-api-key": key}, {"api-key": key}, {"Authorization": f"Basic {basic}"}]


GEN = {"model": MODEL, "prompt": "Say hi", "stream": False, "options": {"num_predict": 3, "temperature": 0}}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
ROUTES = [
    ("GET", "/", None), ("GET", "/api/version", None), ("GET", "/api/tags", None), ("GET", "/api/ps", None),
    ("POST", "/api/show", {"model": MODEL}), ("POST", "/api/generate", {**GEN, "stream": True}),
    ("POST", "/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/api/embed", {"model": MODEL, "input": "x"}), ("POST", "/api/pull", {"model": "hf.co/a/b:Q4_0"}),
    ("POST", "/api/create", {"model": "x", "from": MODEL}), ("DELETE", "/api/delete", {"model": MODEL}),
    ("POST", "/api/copy", {"source": MODEL, "destination": "y"}), ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {**CHAT, "stream": True}), ("POST", "/v1/completions", {"model": MODEL, "prompt": "x"}),
    ("POST", "/v1/embeddings", {"model": MODEL, "input": "x"}), ("GET", "/docs", None), ("GET", "/openapi.json", None),
    ("GET", "/metrics", None), ("GET", "/admin/users", None), ("GET", "/me", None), ("GET", "/me/usage", None),
]


@pytest.mark.parametrize("method, path, body", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_needs_credentials(campus: Campus, method: str, path: str, body: dict | None) -> None:
    r = httpx.request(method, campus.srv.url + path, json=body, timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    text = json.dumps(r.json())
    assert "authentication required" in text and "Traceback" not in text
    if path.startswith("/v1/"):
        assert r.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("value", ["Bearer ' OR 1=1--", "Bearer flx_aaaaaaaa_' OR '1'='1", "Bearer ;DROP TABLE users;--",
                                   "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(),
                                   "Token abc", "Bearer", "Bearer " + "x" * 5000])
def test_malformed_and_injected_credentials_are_401_and_change_nothing(campus: Campus, value: str) -> None:
    before = _row_counts(campus)
    r = httpx.get(campus.srv.url + "/api/tags", headers={"Authorization": value})
    assert r.status_code == 401, r.text
    assert _row_counts(campus) == before


def _row_counts(campus: Campus) -> dict[str, int]:
    return {t: campus.db.count(t) for t in ("users", "api_keys", "model_policies")}


def test_the_four_header_forms_decide_alike(campus: Campus) -> None:
    uid = campus.db.add_user("forms-user")
    _, restricted = campus.db.add_key(uid, models=["other-model*"])
    _, full = campus.db.add_key(uid)
    outcomes = set()
    for headers in header_forms(restricted):
        tags = httpx.get(campus.srv.url + "/api/tags", headers=headers)
        gen = httpx.post(campus.srv.url + "/api/generate", headers=headers, json=GEN, timeout=60)
        pull = httpx.post(campus.srv.url + "/api/pull", headers=headers, json={"model": "hf.co/a/b:Q4_0"})
        models = httpx.get(campus.srv.url + "/v1/models", headers=headers)
        outcomes.add((tags.status_code, json.dumps(tags.json()), gen.status_code, pull.status_code,
                      json.dumps(models.json())))
    assert outcomes == {(200, '{"models": []}', 404, 403, '{"object": "list", "data": []}')}
    statuses = {httpx.post(campus.srv.url + "/api/generate", headers=h, json=GEN, timeout=60).status_code
                for h in header_forms(full)}
    assert statuses == {200}


def test_conflicting_headers_are_refused(campus: Campus) -> None:
    uid = campus.db.add_user("conflict-user")
    _, restricted = campus.db.add_key(uid, models=["nothing*"])
    headers = {**bearer(campus.admin_key), "x-api-key": restricted}
    assert httpx.get(campus.srv.url + "/api/tags", headers=headers).status_code == 401


def test_student_cannot_manage_models(campus: Campus) -> None:
    for method, path, body in ROUTES:
        if path in ("/api/pull", "/api/create", "/api/delete", "/api/copy") or path.startswith("/admin"):
            r = httpx.request(method, campus.srv.url + path, json=body, headers=bearer(campus.student_key))
            assert r.status_code == 403, (path, r.text)
            assert "administrators" in r.json()["error"]
    # German when the client asks for it
    r = httpx.post(campus.srv.url + "/api/pull", json={"model": "x"},
                   headers={**bearer(campus.student_key), "Accept-Language": "de-DE,de;q=0.9"})
    assert r.status_code == 403 and "Administratorinnen" in r.json()["error"]


def test_admin_from_configuration_can_manage(campus: Campus) -> None:
    r = httpx.post(campus.srv.url + "/api/copy", headers=bearer(campus.admin_key),
                   json={"source": MODEL, "destination": "copied:admin"})
    assert r.status_code == 200, r.text
    r = httpx.request("DELETE", campus.srv.url + "/api/delete", headers=bearer(campus.admin_key), json={"model": "copied:admin"})
    assert r.status_code == 200


def test_key_scopes_limit_what_a_key_can_do(campus: Campus) -> None:
    uid = campus.db.add_user("scoped-admin", role="admin")
    _, inference_only = campus.db.add_key(uid, scopes=["inference"])
    assert httpx.post(campus.srv.url + "/api/copy", headers=bearer(inference_only),
                      json={"source": MODEL, "destination": "z:1"}).status_code == 403
    assert httpx.get(campus.srv.url + "/api/tags", headers=bearer(inference_only)).status_code == 200


def test_wrong_key_is_never_echoed(campus: Campus) -> None:
    fake = "flx_abcdefgh_" + "Z" * 43
    r = httpx.get(campus.srv.url + "/api/tags", headers=bearer(fake))
    assert r.status_code == 401 and fake not in r.text
    assert fake not in campus.srv.log() and campus.student_key not in campus.srv.log()


def test_official_clients_with_a_key(campus: Campus) -> None:
    client = ollama.Client(host=campus.srv.url, headers=bearer(campus.student_key))
    assert client.generate(model=MODEL, prompt="Hi", options={"num_predict": 2}).done
    oa = openai.OpenAI(base_url=campus.srv.url + "/v1", api_key=campus.student_key)
    assert oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2).choices
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=campus.srv.url + "/v1", api_key="wrong").models.list()
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=campus.srv.url).list()
    assert err.value.status_code == 401


def test_forbidden_model_looks_like_a_missing_one(campus: Campus) -> None:
    campus.db.add_policy("smollm2*", allowed_roles=["teacher"], max_output=4)
    try:
        time.sleep(5.2)  # policies are cached for 5 s
        s, t = bearer(campus.student_key), bearer(campus.teacher_key)
        assert httpx.get(campus.srv.url + "/api/tags", headers=s).json() == {"models": []}
        assert httpx.get(campus.srv.url + "/v1/models", headers=s).json()["data"] == []
        denied = httpx.post(campus.srv.url + "/api/generate", headers=s, json=GEN)
        missing = httpx.post(campus.srv.url + "/api/generate", headers=s, json={**GEN, "model": "nosuch:1b"})
        assert denied.status_code == missing.status_code == 404
        assert denied.json()["error"].replace(MODEL, "X") == missing.json()["error"].replace("nosuch:1b", "X")
        shown = httpx.post(campus.srv.url + "/api/show", headers=s, json={"model": MODEL})
        assert shown.status_code == 404
        oa_denied = httpx.get(campus.srv.url + f"/v1/models/{MODEL}", headers=s)
        assert oa_denied.status_code == 404
        # the teacher may, and the policy caps output at 4 tokens
        r = httpx.post(campus.srv.url + "/api/generate", headers=t, timeout=60,
                       json={**GEN, "options": {"num_predict": 50, "temperature": 0}, "prompt": "Count to 50"})
        assert r.status_code == 200 and r.json()["eval_count"] <= 4
        assert [m["name"] for m in httpx.get(campus.srv.url + "/api/tags", headers=t).json()["models"]] == [MODEL]
    finally:
        campus.db.clear_policies()
        time.sleep(5.2)


def _long_stream(campus: Campus, key: str) -> httpx.Response:
    return httpx.stream("POST", campus.srv.url + "/api/generate", headers=bearer(key), timeout=60,
                        json={"model": MODEL, "prompt": "Tell a long story", "stream": True,
                              "options": {"num_predict": 3000, "ignore_eos": True, "temperature": 0}})


@pytest.mark.parametrize("how", ["revoke key", "demote user", "disable user"])
def test_revocation_ends_open_streams(campus: Campus, how: str) -> None:
    uid = campus.db.add_user(f"victim-{how.replace(' ', '-')}", role="teacher")
    key_id, key = campus.db.add_key(uid)
    with _long_stream(campus, key) as r:
        lines = r.iter_lines()
        assert "response" in json.loads(next(lines))
        t0 = time.monotonic()
        if how == "revoke key":
            campus.db.revoke_key(key_id)
        elif how == "demote user":
            campus.db.update_user(uid, role="student")
        else:
            from flexi.db.models import utcnow

            campus.db.update_user(uid, disabled_at=utcnow())
        last = None
        for line in lines:
            last = json.loads(line)
            if "error" in last or last.get("done"):
                break
        assert last is not None and "widerrufen" in last.get("error", ""), last  # the user's language: German by default
        assert time.monotonic() - t0 < 5
    after = httpx.get(campus.srv.url + "/api/tags", headers=bearer(key)).status_code
    assert after == (200 if how == "demote user" else 401)


def test_usage_record_per_request_without_text(campus: Campus) -> None:
    uid = campus.db.add_user("usage-user")
    key_id, key = campus.db.add_key(uid)
    marker = "Zebra-Quokka-7731"
    r = httpx.post(campus.srv.url + "/api/generate", headers=bearer(key), timeout=60,
                   json={**GEN, "prompt": f"Repeat {marker}"})
    assert r.status_code == 200
    r2 = httpx.post(campus.srv.url + "/v1/chat/completions", headers=bearer(key), timeout=60,
                    json={**CHAT, "messages": [{"role": "user", "content": marker}]})
    assert r2.status_code == 200
    records = _wait_records(campus, "usage-user", 2)
    gen_rec, chat_rec = records
    assert (gen_rec.endpoint, gen_rec.status, gen_rec.key_id, gen_rec.model) == ("/api/generate", "ok", key_id, MODEL)
    assert gen_rec.prompt_tokens == r.json()["prompt_eval_count"] and gen_rec.completion_tokens == r.json()["eval_count"]
    assert chat_rec.endpoint == "/v1/chat/completions"
    assert chat_rec.completion_tokens == r2.json()["usage"]["completion_tokens"]
    assert campus.db.count("content_records") == 0
    raw = b"".join(p.read_bytes() for p in campus.srv.home.glob("flexi.db*"))  # SQLite: the whole file
    assert marker.encode() not in raw  # neither the prompt nor anything else of the text is stored


def _wait_records(campus: Campus, subject: str, n: int, timeout: float = 15) -> list:
    return campus.db.wait_usage(subject, n, timeout)


def test_cancelled_stream_is_billed_as_delivered(campus: Campus) -> None:
    uid = campus.db.add_user("cancel-user")
    _, key = campus.db.add_key(uid)
    with _long_stream(campus, key) as r:
        tokens = 0
        for line in r.iter_lines():  # status lines (waiting, loading) on a busy machine come first: count tokens
            tokens += bool(line) and "status" not in json.loads(line)
            if tokens == 3:
                break
    (record,) = _wait_records(campus, "cancel-user", 1)
    assert record.status == "cancelled"
    assert 3 <= record.completion_tokens < 60  # what was delivered, not the 3000 asked for


def test_requests_per_minute_limit_says_which_limit_and_when(campus: Campus) -> None:
    uid = campus.db.add_user("rpm-user", locale="de")
    _, key = campus.db.add_key(uid)
    campus.db.set_quota("user", uid, requests_per_minute=2)
    fresh_minute()
    body = {**GEN, "options": {"num_predict": 1}}
    codes = [httpx.post(campus.srv.url + "/api/generate", headers=bearer(key), json=body, timeout=60) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    refused = codes[2]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "2 Anfragen pro Minute" in refused.json()["error"]  # the user's stored language
    assert refused.json()["limit"] == "requests_per_minute" and refused.json()["resets_at"].endswith("Z")
    en = httpx.post(campus.srv.url + "/v1/chat/completions", json=CHAT,
                    headers={**bearer(key), "Accept-Language": "en-GB,en;q=0.8"})
    assert en.status_code == 429 and "2 requests per minute" in en.json()["error"]["message"]
    assert en.json()["error"]["type"] == "rate_limit_error"


def test_course_key_bills_the_course_quota(campus: Campus) -> None:
    uid = campus.db.add_user("course-user")
    course = campus.db.add_course("ml-101", {uid: "student"})
    _, course_key = campus.db.add_key(uid, course_id=course)
    campus.db.set_quota("course", course, tokens_per_day=1)
    r = httpx.post(campus.srv.url + "/api/generate", headers=bearer(course_key), json=GEN)
    assert r.status_code == 429 and "Kurses" in r.json()["error"] and r.json()["scope"] == "course"
    _, own_key = campus.db.add_key(uid)
    assert httpx.post(campus.srv.url + "/api/generate", headers=bearer(own_key), json=GEN, timeout=60).status_code == 200
    via_header = httpx.post(campus.srv.url + "/api/generate", json=GEN,
                            headers={**bearer(own_key), "X-Flexi-Course": "ml-101"})
    assert via_header.status_code == 429
    other = httpx.post(campus.srv.url + "/api/generate", json=GEN,
                       headers={**bearer(campus.student_key), "X-Flexi-Course": "ml-101"})
    assert other.status_code == 403  # not a member


def test_100_concurrent_streams_do_not_overspend_a_small_quota(campus: Campus) -> None:
    """Race-free counters: the day's total stays within the quota plus at most one request."""
    uid = campus.db.add_user("race-user")
    _, key = campus.db.add_key(uid)
    limit = 400
    campus.db.set_quota("user", uid, tokens_per_day=limit)
    body = {"model": MODEL, "prompt": "Write a poem", "stream": True,
            "options": {"num_predict": 12, "ignore_eos": True, "temperature": 0}}

    async def one(client: httpx.AsyncClient) -> tuple[int, int]:
        async with client.stream("POST", "/api/generate", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return r.status_code, 0
            tokens = 0
            async for line in r.aiter_lines():
                ev = json.loads(line)
                if ev.get("done"):
                    tokens = ev["prompt_eval_count"] + ev["eval_count"]
            return 200, tokens

    async def burst() -> list[tuple[int, int]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=campus.srv.url, headers=bearer(key), timeout=120, limits=limits) as c:
            return await asyncio.gather(*(one(c) for _ in range(100)))

    results = asyncio.run(burst())
    served = [t for code, t in results if code == 200]
    assert {code for code, _ in results} <= {200, 429}
    assert served and len(served) < 100
    per_request = max(served)
    assert sum(served) <= limit + per_request
    _wait_records(campus, "race-user", 100)
    used = campus.db.counters("user", uid)
    assert used["day"] == sum(r.prompt_tokens + r.completion_tokens for r in campus.db.usage(campus.db.pseudonym("race-user")))
    assert used["day"] <= limit + per_request


def test_browser_session_needs_current_terms(campus: Campus) -> None:
    uid = campus.db.add_user("browser-user")
    cookie = {"Cookie": f"flexi_session={campus.db.add_session(uid)}"}
    r = httpx.get(campus.srv.url + "/api/tags", headers=cookie)
    assert r.status_code == 403 and r.json()["terms_version"] == TERMS and r.json()["terms_url"] == "/terms"
    campus.db.accept_terms(uid, TERMS)
    assert httpx.get(campus.srv.url + "/api/tags", headers=cookie).status_code == 200
    bad = {"Cookie": "flexi_session=forged-token"}
    assert httpx.get(campus.srv.url + "/api/tags", headers=bad).status_code == 401


def test_fresh_database_has_no_way_in(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Nobody becomes admin by being first: with auth on and no users, every route is 401."""
    srv = start_server(tmp_path_factory.mktemp("fresh") / "home", {"FLEXI_AUTH": "on"})
    try:
        for method, path, body in ROUTES[:12]:
            assert httpx.request(method, srv.url + path, json=body).status_code == 401
        con = sqlite3.connect(srv.home / "flexi.db")
        assert con.execute("SELECT count(*) FROM users").fetchone()[0] == 0
        con.close()
    finally:
        stop_server(srv)


def test_content_is_logged_only_for_a_named_purpose(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_server(tmp_path_factory.mktemp("contentlog") / "home",
                       {"FLEXI_CONTENT_LOG_PURPOSE": "Qualitätssicherung Kurs ML-101", "FLEXI_CONTENT_LOG_RETENTION_DAYS": "7"})
    try:
        marker = "Pelican-Walrus-4411"
        r = httpx.post(srv.url + "/api/generate", json={**GEN, "prompt": f"Say {marker}"}, timeout=60)
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        rows: list = []
        while time.monotonic() < deadline and not rows:
            con = sqlite3.connect(srv.home / "flexi.db")
            rows = con.execute("SELECT purpose, prompt, response, endpoint FROM content_records").fetchall()
            con.close()
            time.sleep(0.1)
        assert len(rows) == 1
        purpose, prompt, response, endpoint = rows[0]
        assert purpose == "Qualitätssicherung Kurs ML-101" and marker in prompt and endpoint == "/api/generate"
        assert response == r.json()["response"]
    finally:
        stop_server(srv)


def test_options_needs_credentials_too(campus: Campus) -> None:
    r = httpx.request("OPTIONS", campus.srv.url + "/admin/users")
    assert r.status_code == 401 and "allow" not in r.headers  # no route listing for strangers


def test_an_inference_key_cannot_export_erase_or_rekey_the_account(campus: Campus) -> None:
    uid = campus.db.add_user("narrow-key-owner")
    _, narrow = campus.db.add_key(uid, scopes=["inference"])
    h = bearer(narrow)
    assert httpx.get(campus.srv.url + "/me", headers=h).status_code == 200
    assert httpx.get(campus.srv.url + "/me/usage", headers=h).status_code == 200
    for method, path in (("GET", "/me/export"), ("DELETE", "/me?confirm=true"), ("POST", "/me/keys")):
        r = httpx.request(method, campus.srv.url + path, headers=h, json={"name": "x"} if method == "POST" else None)
        assert r.status_code == 403 and "account" in r.json()["error"], (path, r.text)
    assert httpx.get(campus.srv.url + "/me", headers=h).status_code == 200  # still there


def test_loading_a_model_counts_and_cannot_pin_or_unload_it(campus: Campus) -> None:
    uid = campus.db.add_user("loader")
    _, key = campus.db.add_key(uid)
    campus.db.set_quota("user", uid, requests_per_minute=2)
    fresh_minute()
    h = bearer(key)
    pin = httpx.post(campus.srv.url + "/api/generate", headers=h, json={"model": MODEL, "keep_alive": -1}, timeout=60)
    assert pin.status_code == 200 and pin.json()["done_reason"] == "load"
    (entry,) = [m for m in httpx.get(campus.srv.url + "/api/ps", headers=h).json()["models"] if m["name"] == MODEL]
    assert not entry["expires_at"].startswith(("2316", "23")), entry  # the server's keep_alive, not forever
    unload = httpx.post(campus.srv.url + "/api/generate", headers=h, json={"model": MODEL, "keep_alive": 0}, timeout=60)
    assert unload.status_code == 200 and unload.json()["done_reason"] == "load"  # not "unload": not theirs to decide
    assert httpx.post(campus.srv.url + "/api/generate", headers=h, json={"model": MODEL}).status_code == 429
    records = _wait_records(campus, "loader", 3)
    assert [r.status for r in records] == ["ok", "ok", "rejected"]


def test_a_course_key_stops_billing_the_course_after_leaving_it(campus: Campus) -> None:
    uid = campus.db.add_user("course-leaver")
    course = campus.db.add_course("stats-202", {uid: "student"})
    _, course_key = campus.db.add_key(uid, course_id=course)
    assert httpx.post(campus.srv.url + "/api/generate", headers=bearer(course_key), json=GEN, timeout=60).status_code == 200
    campus.db.remove_course_member(course, uid)
    time.sleep(10.5)  # memberships are cached for 10 s
    r = httpx.post(campus.srv.url + "/api/generate", headers=bearer(course_key), json=GEN, timeout=60)
    assert r.status_code == 403 and "Kurs" in r.json()["error"]


def _sqlite_busy_waiting(pid: int) -> bool:
    """A thread of the server process sleeps in the kernel's timed sleep: SQLite's busy handler
    retrying a lock someone else holds (the event loop waits in epoll, idle workers on a futex)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "wchan").read_text() in ("hrtimer_nanosleep", "do_nanosleep"):
                return True
            if (task / "syscall").read_text().split()[0] in ("35", "230"):  # x86-64 nanosleep, clock_nanosleep
                return True
        except (OSError, IndexError):
            continue
    return False


def _pg_lock_waiters(campus: Campus) -> int:
    """Backends of the server's database that wait for a lock (PostgreSQL's own view)."""
    with campus.db.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")).scalar_one()


@contextlib.contextmanager
def _write_lock_held_elsewhere(campus: Campus) -> Iterator[None]:
    """Another process (the CLI, a backup, a migration) holds the lock that quota admission needs:
    SQLite's write lock, or on PostgreSQL an EXCLUSIVE lock on the quota counters (reads still pass)."""
    if campus.database == "sqlite":
        holder = sqlite3.connect(campus.srv.home / "flexi.db", timeout=1, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    else:
        with campus.db.engine.connect() as conn, conn.begin() as tx:
            conn.execute(text("LOCK TABLE quota_counters IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                tx.rollback()


def test_a_database_lock_held_elsewhere_does_not_freeze_the_server(campus: Campus) -> None:
    """Another process holds the database lock: requests that must write wait (in a worker thread),
    everyone else is still served meanwhile. Checked by events, not a stopwatch: the writer is seen
    waiting for the lock, then another user's request is answered while the writer still waits."""
    uid = campus.db.add_user("lock-victim")
    _, key = campus.db.add_key(uid)
    campus.db.set_quota("user", uid, requests_per_minute=100)
    waiting: list[int] = []
    with _write_lock_held_elsewhere(campus):
        t = threading.Thread(target=lambda: waiting.append(httpx.post(
            campus.srv.url + "/api/generate", headers=bearer(key), json=GEN, timeout=120).status_code))
        t.start()
        blocked = ((lambda: _sqlite_busy_waiting(campus.srv.proc.pid)) if campus.database == "sqlite"
                   else (lambda: _pg_lock_waiters(campus) > 0))
        deadline = time.monotonic() + 30
        while not blocked() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert blocked(), "the quota-limited request never waited for the lock"
        r = httpx.get(campus.srv.url + "/api/tags", headers=bearer(campus.teacher_key), timeout=60)
        assert r.status_code == 200
        assert t.is_alive() and not waiting, "the writer finished while the lock was held"
    t.join(60)
    assert waiting == [200]


def test_show_hides_server_paths_from_non_admins(campus: Campus) -> None:
    student = httpx.post(campus.srv.url + "/api/show", headers=bearer(campus.student_key), json={"model": MODEL}).json()
    admin = httpx.post(campus.srv.url + "/api/show", headers=bearer(campus.admin_key), json={"model": MODEL}).json()
    assert str(campus.srv.home) not in student["modelfile"] and f"FROM {MODEL}" in student["modelfile"]
    assert str(campus.srv.home) in admin["modelfile"]


def test_admin_from_configuration_can_issue_admin_keys(campus: Campus) -> None:
    """`boss` is admin through FLEXI_ADMINS only (stored role: student); the key rules must agree."""
    me = httpx.get(campus.srv.url + "/me", headers=bearer(campus.admin_key)).json()
    r = httpx.post(campus.srv.url + f"/admin/users/{me['id']}/keys", headers=bearer(campus.admin_key),
                   json={"name": "ops", "scopes": ["admin", "manage", "inference"]})
    assert r.status_code == 201, r.text


def test_a_key_cannot_mint_a_key_outside_its_own_limits(campus: Campus) -> None:
    uid = campus.db.add_user("minter")
    course = campus.db.add_course("bio-303", {uid: "student"})
    key_id, parent = campus.db.add_key(uid, scopes=["inference", "account"], course_id=course)
    campus.db.set_quota("key", key_id, requests_per_minute=2)
    fresh_minute()
    r = httpx.post(campus.srv.url + "/me/keys", headers=bearer(parent), json={"name": "child"})
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["course_id"] == course  # still billed to the course
    body = {**GEN, "options": {"num_predict": 1}}
    codes = [httpx.post(campus.srv.url + "/api/generate", headers=bearer(child["key"]), json=body, timeout=60).status_code
             for _ in range(3)]
    assert codes == [200, 200, 429]  # the parent's key quota came along
