"""The web page marks models of external backends (a cloud provider outside the university): the privacy
notice before the terms names each external backend and its host, the model picker shows an "extern"
badge whose tooltip says that prompts leave the university, and local models carry no badge."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from flexi.access import admin_ops as ops
from flexi.access.passwords import hash_password
from flexi.store.store import ModelStore
from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, start_server, stop_server
from tests.web.conftest import watched_pages

pytestmark = pytest.mark.e2e

TERMS = "2026-12"
PASSWORD = "correct horse battery"


@dataclass
class Site:
    srv: RunningServer
    db: ServerDB


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("badge") / "home"
    home.mkdir(parents=True)
    (home / "terms.md").write_text("# Nutzungsbedingungen\n", encoding="utf-8")
    # never contacted here: listing and choosing a model do not reach the backend
    (home / "config.toml").write_text(f'''
[[backends]]
name = "eu-cloud"
url = "https://llm.eu-cloud.example/v1"
kind = "openai"
models = {{ "cloud-model" = "{MODEL}" }}
external = true
enabled = true
''')
    srv = start_server(home, {"FLEXI_AUTH": "on", "FLEXI_TERMS_VERSION": TERMS, "FLEXI_DEFAULT_LOCALE": "de"})
    db = ServerDB(home)
    db.add_user("anna", role="student", password_hash=hash_password(PASSWORD))
    with db.session() as s:  # what `flexi safety --save` stores: the picker shows its pass rate
        digest = ModelStore(home / "models").get(MODEL).digest
        ops.save_model_report(s, model=MODEL, digest=digest, tool="flexi safety",
                              result={"model": MODEL, "pass_rate": 0.875, "categories": {}})
        s.commit()
    try:
        yield Site(srv, db)
    finally:
        db.close()
        stop_server(srv)


@pytest.fixture()
def page_of(browser: Any, site: Site) -> Iterator[Any]:
    with watched_pages(browser, site.srv.url, "de-DE") as make:
        yield make


def test_external_models_carry_a_badge_and_the_notice_names_the_backend(page_of: Any, site: Site) -> None:
    page = page_of("de-DE")
    page.goto(site.srv.url + "/")
    page.fill("#login-user", "anna")
    page.fill("#login-pass", PASSWORD)
    page.press("#login-pass", "Enter")
    page.wait_for_selector("text=Nutzungsbedingungen und Datenschutz")
    notice = page.locator("li.privacy-external")
    assert notice.count() == 1
    assert "eu-cloud (llm.eu-cloud.example)" in notice.inner_text() and "verlassen die Hochschule" in notice.inner_text()
    assert "Die übrigen Modelle laufen auf den Servern der Hochschule." in page.locator("#privacy-heading + ul").inner_text()
    page.click("text=Ich stimme zu")
    page.wait_for_selector("#prompt")

    badge = page.locator("#model-external")
    cloud = page.locator("#model-select option", has_text="cloud-model")
    assert cloud.inner_text() == "cloud-model:latest (extern)"
    assert "verlassen die Hochschule" in (cloud.get_attribute("title") or "")
    page.select_option("#model-select", "cloud-model:latest")
    assert badge.is_visible() and badge.inner_text() == "extern"
    assert "Familie" not in page.locator("#model-facts").inner_text()  # the catalogue links local models only
    assert "Ihre Eingaben verlassen die Hochschule" in (badge.get_attribute("title") or "")
    page.select_option("#model-select", MODEL)
    assert badge.is_hidden()
    local = page.locator("#model-select option", has_text=MODEL)
    assert local.inner_text() == MODEL and local.get_attribute("title") is None
    facts = page.locator("#model-facts").inner_text()  # the catalogue family (flexi.catalog) next to the choice
    assert "Lizenz: apache-2.0" in facts and "Familie: SmolLM2" in facts and re.search(r"Offenheit \d+/13 offen", facts)
    assert "Sicherheitsproben 88 % bestanden (flexi safety)" in facts
