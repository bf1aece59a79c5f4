"""GET /ui/catalog and the catalogue badge of /ui/models, against a real server with auth on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.access_helpers import ServerDB
from tests.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, ServerDB]]:
    home = tmp_path_factory.mktemp("catalogroute") / "home"
    server = start_server(home, {"FLEXI_AUTH": "on"})
    try:
        yield server, ServerDB(home)
    finally:
        stop_server(server)


def test_catalog_needs_a_sign_in_and_links_the_installed_default_model(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    assert httpx.get(server.url + "/ui/catalog").status_code == 401
    _kid, key = db.add_key(db.add_user("catalog-user"))
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.get(server.url + "/ui/catalog", headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert "Liesenfeld" in body["framework"]["citation"]
    smol = next(f for f in body["families"] if f["id"] == "smollm2")
    assert smol["installed"] == [MODEL] and smol["sources"] and smol["openness_score"].endswith("/13")
    assert smol["german_note"]["de"] and smol["german_note"]["en"]
    assert all(f["installed"] == [] for f in body["families"] if f["id"] != "smollm2")
    card = next(m for m in httpx.get(server.url + "/ui/models", headers=auth).json()["models"] if m["name"] == MODEL)
    assert card["catalog"] == {"family": "smollm2", "name": "SmolLM2", "licence": "Apache-2.0",
                               "openness": smol["openness_score"], "by": "name"}


def test_models_hidden_by_policy_are_not_listed_as_installed(srv: tuple[RunningServer, ServerDB]) -> None:
    server, db = srv
    _kid, key = db.add_key(db.add_user("catalog-student"))
    db.add_policy("smollm2*", allowed_roles=["teacher"])
    try:
        import time

        time.sleep(5.5)  # policies are cached for 5 s
        body = httpx.get(server.url + "/ui/catalog", headers={"Authorization": f"Bearer {key}"}).json()
        assert next(f for f in body["families"] if f["id"] == "smollm2")["installed"] == []
    finally:
        db.clear_policies()
