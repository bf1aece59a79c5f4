"""Browser tests: Debian's Chromium driven by Playwright for Python, against a real Flexi server.

Chromium comes from `apt-get install chromium` (.ci/run does it); Playwright's own browser
download does not work on this machine. axe-core comes from the npm registry (.ci/run runs
`npm install`; the fixture does it too when npm is there). Without Chromium the tests skip,
unless FLEXI_REQUIRE_BROWSER=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("FLEXI_CHROMIUM", "/usr/bin/chromium")
AXE_DIR = Path(__file__).parent / ".axe"
AXE_VERSION = "4.11.0"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _require() -> None:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("FLEXI_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Module-scoped on purpose: Playwright's sync API keeps an asyncio loop running while it is open,
    and asyncio tests collected after the browser tests would fail on it."""
    _require()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """The axe-core script (npm package `axe-core`), injected into pages to check accessibility."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists() and shutil.which("npm"):
        AXE_DIR.mkdir(exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR),
                        f"axe-core@{AXE_VERSION}"], check=False, timeout=300)
    if not script.exists():
        message = "axe-core is not installed (npm install --prefix tests/web/.axe axe-core)"
        if os.environ.get("FLEXI_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return script.read_text(encoding="utf-8")


@contextmanager
def watched_pages(browser: Any, server_url: str, default_locale: str) -> Iterator[Callable[..., Any]]:
    """A factory of fresh pages (own cookies and storage), each watched for CSP violations, script errors,
    alerts and requests that leave the server; at the end every page is closed and nothing may have happened."""
    contexts: list[Any] = []
    problems: list[str] = []

    def make(locale: str = default_locale) -> Any:
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 860})
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if "Content Security Policy" in m.text or m.type == "error" and "Failed to load resource" not in m.text
                else None)  # HTTP errors are answers the page shows; script errors and CSP violations are bugs
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (problems.append(f"alert: {d.message}"), d.dismiss()) if d.type == "alert" else None)
        page.on("request", lambda r: problems.append(f"foreign request: {r.url}")
                if not r.url.startswith((server_url, "data:", "blob:")) else None)
        return page

    yield make
    for context in contexts:
        context.close()
    assert problems == []
