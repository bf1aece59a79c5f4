"""The one message catalogue: every key in German and English with the same placeholders, one lookup."""

from __future__ import annotations

import string

import pytest

from flexi import i18n
from flexi.i18n import access, admin, aliases, bench, catalog, cli, energy, evals, logprobs, lti, plan, quant, rag, rag_eval, safety, selection, templates


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


@pytest.mark.parametrize("key", sorted(i18n.CATALOGUE))
def test_every_key_has_german_and_english_with_the_same_placeholders(key: str) -> None:
    texts = i18n.CATALOGUE[key]
    assert set(texts) == set(i18n.LOCALES)
    assert all(text.strip() for text in texts.values())
    assert _placeholders(texts["de"]) == _placeholders(texts["en"])


def test_the_domains_merge_into_one_lookup_with_each_key_once() -> None:
    domains = [access.ENTRIES, admin.ENTRIES, aliases.ENTRIES, bench.ENTRIES, catalog.ENTRIES, cli.ENTRIES,
               energy.ENTRIES, evals.ENTRIES, logprobs.ENTRIES, lti.ENTRIES, plan.ENTRIES, quant.ENTRIES, rag.ENTRIES,
               rag_eval.ENTRIES, safety.ENTRIES, selection.ENTRIES, templates.ENTRIES]
    assert sum(len(d) for d in domains) == len(i18n.CATALOGUE)
    with pytest.raises(RuntimeError, match="defined twice"):
        i18n._merge([{"x": {"de": "a", "en": "b"}}, {"x": {"de": "c", "en": "d"}}])


def test_text_formats_in_the_locale_and_falls_back_to_english() -> None:
    assert i18n.text("forbidden_scope", "de", scope="manage").endswith("(Berechtigung manage fehlt)")
    assert i18n.text("forbidden_scope", "en", scope="manage").endswith("(scope manage missing)")
    assert i18n.text("user_gone", "fr") == "no such user"
    assert i18n.text("deleted", "de", name="m") == "'m' gelöscht"


@pytest.mark.parametrize("header,fallback,locale", [
    (None, "de", "de"),
    ("", "en", "en"),
    ("de-DE,en;q=0.5", "en", "de"),
    ("en;q=0.4,de;q=0.9", "en", "de"),
    ("fr-FR, en-GB;q=0.8", "de", "en"),
    ("fr", "de", "de"),
    ("de;q=bogus, en", "de", "en"),
])
def test_request_locale_follows_accept_language_quality(header: str | None, fallback: str, locale: str) -> None:
    assert i18n.request_locale(header, fallback) == locale


def test_env_locale_follows_posix_order() -> None:
    assert i18n.env_locale({"LC_ALL": "de_DE.UTF-8", "LANG": "en_US"}) == "de"
    assert i18n.env_locale({"LC_MESSAGES": "en_GB", "LANG": "de_DE"}) == "en"
    assert i18n.env_locale({"LANG": "de_AT"}) == "de"
    assert i18n.env_locale({}) == "en"
