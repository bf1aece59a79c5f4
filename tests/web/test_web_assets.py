"""The web interface's static parts: every text in both languages, nothing loaded from elsewhere."""

from __future__ import annotations

import re

from flexi.web.charts import bar_chart
from flexi.http.csrf import csrf_ok, csrf_token
from flexi.http.negotiate import wants_html
from flexi.web.routes import STATIC_DIR

JS = {p.name: p.read_text(encoding="utf-8") for p in STATIC_DIR.glob("*.js")}
DYNAMIC = {  # keys built at run time: t(`quota_${limit}`), t(`role_${r}`), …
    "quota_": ["quota_tokens_per_day", "quota_tokens_per_week"],
    "role_": [f"role_{r}" for r in ("student", "teacher", "researcher", "service", "admin")],
    "course_role_": [f"course_role_{r}" for r in ("student", "tutor", "teacher")],
    "quota_kind_": [f"quota_kind_{k}" for k in ("user", "key", "course", "role")],
    "limit_": ["limit_requests_per_minute", "limit_tokens_per_day", "limit_tokens_per_week"],
    "chart_": ["chart_requests_day", "chart_tokens_day", "chart_tokens_model", "chart_tokens_course"],
}


def _dictionary(lang: str) -> set[str]:
    text = JS["i18n.js"]
    start = text.index(f"  {lang}: {{")
    end = text.index("\n  },", start)
    return set(re.findall(r"(?:^|[\s,{])([a-z_0-9]+):\s*\"", text[start:end], re.M))


def test_every_text_the_pages_use_exists_in_german_and_english() -> None:
    used: set[str] = set()
    for name, text in JS.items():
        used |= set(re.findall(r"\bt\(\"([a-z_0-9]+)\"", text))
        for prefix in re.findall(r"\bt\(`([a-z_]+)\$\{", text):
            assert prefix in DYNAMIC, f"{name}: dynamic key t(`{prefix}…`) is not listed in this test"
            used |= set(DYNAMIC[prefix])
    de, en = _dictionary("de"), _dictionary("en")
    assert used - en == set(), "missing English texts"
    assert used - de == set(), "missing German texts"
    assert de == en, "the two languages have different keys"


def test_no_asset_refers_to_another_origin() -> None:
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in (".js", ".mjs", ".css", ".html"):
            text = path.read_text(encoding="utf-8")
            for url in re.findall(r"(?:src|href)\s*=\s*[\"'](https?:)?//", text):
                raise AssertionError(f"{path.name} loads from another origin")
            assert "fonts.googleapis" not in text and "cdn.jsdelivr" not in text and "unpkg.com" not in text
    for page in ("index.html", "docs.html"):
        html = (STATIC_DIR / page).read_text(encoding="utf-8")
        assert "<script>" not in html and "style=" not in html, page  # nothing inline: the CSP forbids it


def test_no_inner_html_outside_the_markdown_renderer() -> None:
    for name, text in JS.items():
        if name != "markdown.js":
            assert "innerHTML" not in text and "insertAdjacentHTML" not in text, name


def test_content_negotiation_for_root() -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
    assert wants_html(browser)
    assert not wants_html(None) and not wants_html("*/*") and not wants_html("application/json")
    assert not wants_html("text/html;q=0")


def test_csrf_token_is_bound_to_the_session() -> None:
    token = csrf_token("session-a")
    assert csrf_ok("session-a", token) and not csrf_ok("session-b", token)
    assert not csrf_ok("session-a", None) and not csrf_ok("session-a", "")


def test_chart_escapes_labels_and_has_an_accessible_title() -> None:
    svg = bar_chart("Tokens <per> day", ["<script>alert(1)</script>", "b&c"], [3, 0], locale="de")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "b&amp;c" in svg
    assert 'role="img"' in svg and "<title" in svg
    assert "Keine Daten" in bar_chart("x", [], [], locale="de")
    assert "1.500" in bar_chart("x", ["a"], [1500], locale="de")
