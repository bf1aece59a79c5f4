"""The administration's energy tab in a real Chromium against a real server: the figures of /admin/energy
in a table, the server-rendered charts loaded (trends, peak concurrency per hour), German and English,
no accessibility violations. Page fixtures (CSP violations, script errors, foreign requests fail a test)
come from test_web_ui."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import MODEL
from tests.web.test_admin_tabs import AdminCampus, admin_page, campus, rest  # noqa: F401 - campus is a fixture
from tests.web.test_web_ui import axe, page_of, shot  # noqa: F401 - page_of is a fixture

pytestmark = pytest.mark.e2e


def test_the_energy_tab_shows_the_report_and_its_charts(page_of: Any, campus: AdminCampus, axe_source: str) -> None:
    httpx.post(campus.srv.url + "/api/generate", headers={"Authorization": f"Bearer {campus.keys['anna']}"},
               json={"model": MODEL, "prompt": "Hallo", "stream": False, "options": {"num_predict": 8}},
               timeout=180).raise_for_status()
    report = rest(campus, "GET", "/admin/energy?days=30&by=model,course")
    assert any(r["model"] == MODEL and r["kwh"] > 0 for r in report["rows"])
    page = admin_page(page_of, campus, "energy")
    assert page.locator("main nav a[aria-current=page]").inner_text() == "Energie"
    row = page.locator("tbody tr", has_text=MODEL).first
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() == "(ohne Kurs)"
    assert page.locator("tbody tr", has_text="Leerlauf").count() >= 1
    assert "kWh" in page.locator("main p").first.inner_text() and page.get_by_text("Geschätzte", exact=False).count() == 1
    images = page.locator(".charts img")
    assert images.count() == 4
    page.wait_for_function("() => [...document.querySelectorAll('.charts img')].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "admin-energy-de")
    assert axe(page, axe_source) == []
    english = admin_page(page_of, campus, "energy", "en-GB")
    english.locator("tbody tr", has_text="idle").first.wait_for()
    assert english.locator("main nav a[aria-current=page]").inner_text() == "Energy"
