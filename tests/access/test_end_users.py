"""A Moodle site's key end to end (issue 15): OpenAI's `user` (Moodle sends a hash of its site and user id) is a
pseudonymous sub-identity of a service account's key - each end user gets the key's per-end-user limits for
themself, a student's key cannot multiply its share, and usage rows carry a keyed pseudonym of the end user,
never the value the client sent. Real server, FLEXI_AUTH=on, the official `openai` client."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from sqlalchemy import select

from flexi.db.models import User

from tests.access_helpers import ServerDB, fresh_minute
from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e


@dataclass
class Site:
    srv: RunningServer
    db: ServerDB
    moodle_key_id: int
    moodle_key: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    srv = start_server(tmp_path_factory.mktemp("end-users") / "home", {"FLEXI_AUTH": "on"})
    db = ServerDB(srv.home)
    moodle = db.add_user("moodle-site", role="service")
    key_id, key = db.add_key(moodle)
    db.set_quota("enduser", key_id, requests_per_minute=3)  # each student of the site: 3 a minute
    db.set_quota("key", key_id, requests_per_minute=1000)  # the site as a whole
    try:
        yield Site(srv, db, key_id, key)
    finally:
        db.close()
        stop_server(srv)


def _client(site: Site, key: str, language: str = "en") -> openai.OpenAI:
    return openai.OpenAI(base_url=site.srv.url + "/v1", api_key=key, max_retries=0,
                         default_headers={"Accept-Language": language})


def _ask(client: openai.OpenAI, user: str) -> str:
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                            temperature=0, user=user)
    return answer.choices[0].message.content or ""


def _moodle_user(user_id: int) -> str:
    """What Moodle's AI providers send as `user`: sha256 of the site identifier and the user id."""
    return hashlib.sha256(f"site-identifier-abc{user_id}".encode()).hexdigest()


def test_each_end_user_has_their_own_share_and_usage_rows_carry_pseudonyms(site: Site) -> None:
    fresh_minute(40)
    client = _client(site, site.moodle_key)
    alice, bob, carol = _moodle_user(11), _moodle_user(12), _moodle_user(13)
    _ask(client, alice)
    _ask(client, bob)
    for _ in range(3):
        _ask(client, carol)
    with pytest.raises(openai.RateLimitError) as refused:  # carol's fourth in this minute: her own share is used up
        _ask(client, carol)
    body = refused.value.response.json()
    assert "your own share" in body["error"]["message"] and "3 requests per minute" in body["error"]["message"]
    assert refused.value.response.headers.get("retry-after")
    _ask(client, alice)  # the others go on
    _ask(client, bob)
    german = _client(site, site.moodle_key, "de")
    with pytest.raises(openai.RateLimitError) as refused:
        _ask(german, carol)
    assert "Ihr eigener Anteil" in refused.value.response.json()["error"]["message"]

    rows = site.db.wait_usage("moodle-site", 9)
    by_end_user: dict[str | None, list[str]] = {}
    for row in rows:
        by_end_user.setdefault(row.end_user, []).append(row.status)
    assert len(by_end_user) == 3 and None not in by_end_user  # three distinct pseudonyms, every row has one
    assert sorted(len(v) for v in by_end_user.values()) == [2, 2, 5]
    assert sorted(by_end_user[max(by_end_user, key=lambda k: len(by_end_user[k]))]) == ["ok"] * 3 + ["rejected"] * 2
    for pseudonym in by_end_user:  # a keyed hash: neither the value sent nor its plain hash
        assert pseudonym not in (alice, bob, carol) and len(pseudonym or "") == 64
        assert all(pseudonym != hashlib.sha256(v.encode()).hexdigest() for v in (alice, bob, carol))


def test_admin_sees_a_keys_usage_per_end_user(site: Site) -> None:
    admin = site.db.add_user("site-admin", role="admin")
    _, admin_key = site.db.add_key(admin)
    site.db.wait_usage("moodle-site", 1)
    r = httpx.get(site.srv.url + "/admin/usage", params={"by": "end_user", "key_id": site.moodle_key_id},
                  headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)
    assert r.status_code == 200, r.text
    groups = [row["end_user"] for row in r.json()["rows"]]
    assert groups and all(g is None or len(g) == 64 for g in groups)


def test_a_students_key_does_not_multiply_its_share(site: Site) -> None:
    fresh_minute(30)
    student = site.db.add_user("stud-eu", role="student")
    _, key = site.db.add_key(student)
    site.db.set_quota("user", student, requests_per_minute=2)
    client = _client(site, key)
    _ask(client, "x")
    _ask(client, "y")
    with pytest.raises(openai.RateLimitError) as refused:  # a new `user` each time changes nothing
        _ask(client, "z")
    assert "your personal limit" in refused.value.response.json()["error"]["message"]
    assert all(row.end_user is None for row in site.db.wait_usage("stud-eu", 3))


def test_the_ollama_dialect_takes_moodles_user_field(site: Site) -> None:
    """Moodle's Ollama provider sends `user` (the same hash) in /api/generate; it splits like OpenAI's."""
    fresh_minute(20)
    body = {"model": MODEL, "stream": False, "prompt": "hi", "user": _moodle_user(99), "options": {"num_predict": 2}}
    before = {row.end_user for row in site.db.wait_usage("moodle-site", 1)}
    r = httpx.post(site.srv.url + "/api/generate", json=body, headers={"Authorization": f"Bearer {site.moodle_key}"},
                   timeout=120)
    assert r.status_code == 200, r.text
    rows = site.db.wait_usage("moodle-site", len(site.db.wait_usage("moodle-site", 1)) + 1)
    assert {row.end_user for row in rows} - before  # a new end user's pseudonym


def test_one_end_user_is_exported_and_erased_by_the_value_the_site_sends(site: Site) -> None:
    """Art. 15/17 for one Moodle student: Flexi holds only a keyed pseudonym, so the admin brings the value
    Moodle sends for that student. Export lists exactly their records; erasing unlinks them (the site's
    totals stay) and deletes their quota counters, so they start afresh; another student is untouched."""
    admin = site.db.add_user("privacy-admin", role="admin")
    _, admin_key = site.db.add_key(admin)
    headers = {"Authorization": f"Bearer {admin_key}"}
    client = _client(site, site.moodle_key)
    fresh_minute()
    erased, kept = _moodle_user(9001), _moodle_user(9002)
    for _ in range(3):
        _ask(client, erased)
    _ask(client, kept)
    with pytest.raises(openai.RateLimitError):  # the student's own share (3 a minute) is used up
        _ask(client, erased)
    site.db.wait_usage("moodle-site", 5)
    with site.db.session() as s:
        account = s.scalar(select(User.id).where(User.subject == "moodle-site"))

    def export(value: str) -> list[dict[str, object]]:
        r = httpx.post(site.srv.url + "/admin/privacy/end-users/export", json={"account": account, "user": value},
                       headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["usage"]

    deadline = time.monotonic() + 15  # usage rows are written in batches, off the request path
    while (len(export(erased)) < 4 or len(export(kept)) < 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [row["status"] for row in export(erased)].count("ok") == 3 and len(export(kept)) == 1
    r = httpx.post(site.srv.url + "/admin/privacy/end-users/erase", json={"account": account, "user": erased},
                   headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["removed"]["usage_records_unlinked"] >= 4 and r.json()["removed"]["quota_counters"] >= 1
    assert export(erased) == [] and len(export(kept)) == 1
    assert _ask(client, erased) is not None  # counters gone: a fresh share (the records stay unlinked)
    bad = httpx.post(site.srv.url + "/admin/privacy/end-users/erase", json={"account": account, "user": ""},
                     headers=headers, timeout=30)
    assert bad.status_code == 422 and "error" in bad.json()  # as every admin body that fails validation
    missing = httpx.post(site.srv.url + "/admin/privacy/end-users/export", json={"account": 999999, "user": kept},
                         headers=headers, timeout=30)
    assert missing.status_code == 404
    student = site.db.add_user("curious-student", role="student")
    _, student_key = site.db.add_key(student)
    assert httpx.post(site.srv.url + "/admin/privacy/end-users/export", json={"account": account, "user": kept},
                      headers={"Authorization": f"Bearer {student_key}"}, timeout=30).status_code == 403


def test_the_cli_exports_and_erases_one_end_user(site: Site) -> None:
    import json
    import os
    import subprocess
    import sys

    value = _moodle_user(9100)
    _ask(_client(site, site.moodle_key), value)
    env = {**os.environ, "FLEXI_HOME": str(site.srv.home), "LANG": "C"}

    def flexi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flexi", "privacy", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    deadline = time.monotonic() + 15  # usage rows are written in batches, off the request path
    while True:
        out = flexi("export-end-user", "moodle-site", value)
        assert out.returncode == 0, out.stderr
        if json.loads(out.stdout)["usage"] or time.monotonic() > deadline:
            break
    assert len(json.loads(out.stdout)["usage"]) >= 1
    assert flexi("erase-end-user", "moodle-site", value).returncode != 0  # needs --yes
    done = flexi("erase-end-user", "moodle-site", value, "--yes")
    assert done.returncode == 0 and "usage_records_unlinked" in done.stdout, done.stderr
    assert json.loads(flexi("export-end-user", "moodle-site", value).stdout)["usage"] == []
