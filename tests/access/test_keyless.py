"""Key-less clients end to end (issue 15): Moodle 5.0.0–5.0.6 / 5.1.0–5.1.3's Ollama provider sends no
credential, so an operator maps the Moodle server's address to a service account or one of its keys
(FLEXI_KEYLESS_CLIENTS). Real server, FLEXI_AUTH=on; the client's source address is chosen per request
(127.0.0.x are all this machine's loopback), and 127.0.0.2 is a trusted reverse proxy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from flexi.db.models import ApiKey
from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

MOODLE_KEY = "flx_keyless1"  # the prefix the operator names; the key's secret is never needed
MOODLE_GENERATE = {"model": MODEL, "stream": False, "prompt": "hi", "user": "a" * 64, "options": {"num_predict": 2}}


@dataclass
class Keyless:
    srv: RunningServer
    db: ServerDB
    key_id: int


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyless]:
    env = {"FLEXI_AUTH": "on", "FLEXI_TRUSTED_PROXIES": "127.0.0.2",
           "FLEXI_KEYLESS_CLIENTS": f"127.0.0.1/32=key:{MOODLE_KEY},10.1.2.3=moodle-b,10.1.2.4=teacher-x"}
    srv = start_server(tmp_path_factory.mktemp("keyless") / "home", env)
    db = ServerDB(srv.home)
    site = db.add_user("moodle-a", role="service")
    db.add_user("moodle-b", role="service")
    db.add_user("teacher-x", role="teacher")
    with db.session() as s:
        row = ApiKey(prefix=MOODLE_KEY, secret_hash="0" * 64, owner_id=site, scopes=["inference"])
        s.add(row)
        s.commit()
        key_id = row.id
    try:
        yield Keyless(srv, db, key_id)
    finally:
        db.close()
        stop_server(srv)


def _from(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=120)


def test_an_allowed_address_works_without_a_key(keyless: Keyless) -> None:
    with _from("127.0.0.1") as client:
        r = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE)
        assert r.status_code == 200, r.text
        assert r.json()["done"] is True
        chat = client.post(keyless.srv.url + "/v1/chat/completions",
                           json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert chat.status_code == 200, chat.text
        assert client.get(keyless.srv.url + "/api/tags").status_code == 200
    rows = keyless.db.wait_usage("moodle-a", 2)
    assert {row.key_id for row in rows} == {keyless.key_id}  # as the mapped key: its limits and usage
    assert any(row.end_user for row in rows)  # a service key: Moodle's `user` is its end user


def test_another_address_gets_401(keyless: Keyless) -> None:
    with _from("127.0.0.3") as client:
        r = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE)
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("method, path", [("GET", "/admin/users"), ("GET", "/me"), ("GET", "/me/usage"),
                                          ("POST", "/api/pull"), ("DELETE", "/api/delete"), ("GET", "/metrics"),
                                          ("GET", "/docs")])
def test_only_the_inference_api_is_key_less(keyless: Keyless, method: str, path: str) -> None:
    with _from("127.0.0.1") as client:
        r = client.request(method, keyless.srv.url + path, json={"model": MODEL} if method != "GET" else None)
    assert r.status_code in (401, 403), (path, r.status_code, r.text)


def test_forwarded_for_counts_only_from_a_trusted_proxy(keyless: Keyless) -> None:
    with _from("127.0.0.3") as client:  # not a proxy: its X-Forwarded-For proves nothing
        r = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE,
                        headers={"X-Forwarded-For": "10.1.2.3"})
        assert r.status_code == 401, r.text
    with _from("127.0.0.2") as client:  # the trusted proxy: the Moodle server behind it is 10.1.2.3
        r = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE,
                        headers={"X-Forwarded-For": "10.1.2.3"})
        assert r.status_code == 200, r.text
        spoofed = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE,  # the client wrote the left
                              headers={"X-Forwarded-For": "10.1.2.3, 10.9.9.9"})  # one; the proxy saw 10.9.9.9
        assert spoofed.status_code == 401, spoofed.text
        assert client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE).status_code == 401  # the proxy itself
    rows = keyless.db.wait_usage("moodle-b", 1)
    assert rows[0].key_id is None and rows[0].end_user is None  # a mapped account without key: no end-user split


def test_a_credential_always_takes_the_normal_path(keyless: Keyless) -> None:
    student = keyless.db.add_user("stud-k", role="student")
    _, key = keyless.db.add_key(student)
    with _from("127.0.0.1") as client:
        wrong = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE,
                            headers={"Authorization": "Bearer flx_aaaaaaaa_" + "x" * 43})
        assert wrong.status_code == 401, wrong.text  # a bad key is refused, not replaced by the address
        own = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE,
                          headers={"Authorization": f"Bearer {key}"})
        assert own.status_code == 200, own.text
    assert keyless.db.wait_usage("stud-k", 1)[0].end_user is None  # as the student, who cannot split


def test_only_a_working_service_account_is_used(keyless: Keyless) -> None:
    with _from("127.0.0.2") as client:  # 10.1.2.4 is mapped to a teacher: refused, never served as them
        r = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE, headers={"X-Forwarded-For": "10.1.2.4"})
        assert r.status_code == 401, r.text
    keyless.db.revoke_key(keyless.key_id)
    with _from("127.0.0.1") as client:  # the mapped key revoked: key-less access ends on the next request
        r = client.post(keyless.srv.url + "/api/generate", json=MOODLE_GENERATE)
        assert r.status_code == 401, r.text
