"""A Moodle site's key end to end (issue 15): OpenAI's `user` (Moodle sends a hash of its site and user id) is a
pseudonymous sub-identity of a service account's key - each end user gets the key's per-end-user limits for
themself, a student's key cannot multiply its share, and usage rows carry a keyed pseudonym of the end user,
never the value the client sent. Real server, FLEXI_AUTH=on, the official `openai` client."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

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
