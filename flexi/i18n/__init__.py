"""One catalogue for every user-facing text of Flexi, in German and English.

Why one place: the server (HTTP answers), the CLI and `flexi loadtest` used to keep their own tables in
different shapes. Now each domain writes its entries in a module of this package (`access`, `admin`,
`cli`, `bench`, `rag`), and `CATALOGUE` merges them into one lookup in which a key exists exactly once (a
clash fails at import). This package is the lowest layer: it imports nothing else from flexi.

How the language is chosen depends on who reads the text:
- an HTTP caller: `request_locale(Accept-Language, fallback)`, where the fallback is the user's stored
  locale or FLEXI_DEFAULT_LOCALE (`flexi.http.locale.locale_of` applies it to a request);
- a shell user: `env_locale()` from LC_ALL, LC_MESSAGES, LANG (POSIX order), which `t` uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from flexi.i18n import access, admin, aliases, bench, catalog, cli, energy, evals, logprobs, lti, plan, quant, rag, rag_eval, safety, selection, templates

LOCALES = ("de", "en")
DEFAULT_LOCALE = "en"


def _merge(domains: Iterable[Mapping[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for entries in domains:
        for key, texts in entries.items():
            if key in merged:
                raise RuntimeError(f"message key {key!r} is defined twice in flexi.i18n")
            merged[key] = texts
    return merged


CATALOGUE: dict[str, dict[str, str]] = _merge([access.ENTRIES, admin.ENTRIES, aliases.ENTRIES, bench.ENTRIES,
                                             catalog.ENTRIES, cli.ENTRIES, energy.ENTRIES, evals.ENTRIES,
                                             logprobs.ENTRIES, lti.ENTRIES, plan.ENTRIES, quant.ENTRIES, rag.ENTRIES,
                                             rag_eval.ENTRIES, safety.ENTRIES, selection.ENTRIES, templates.ENTRIES])


def text(key: str, locale: str, **values: object) -> str:
    """The message `key` in `locale` (English if that locale has none), formatted with `values`."""
    texts = CATALOGUE[key]
    template = texts.get(locale) or texts[DEFAULT_LOCALE]
    return template.format(**values) if values else template


def request_locale(accept_language: str | None, fallback: str) -> str:
    """The first of de/en named in Accept-Language (quality order), else `fallback`."""
    if not accept_language:
        return fallback
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:20]):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, lang.strip().lower()[:2]))
    for _q, _i, lang in sorted(ranked):
        if lang in LOCALES:
            return lang
    return fallback


def env_locale(env: Mapping[str, str] | None = None) -> str:
    """"de" or "en" for a shell user: from the first of LC_ALL, LC_MESSAGES, LANG that is set."""
    env = os.environ if env is None else env
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name)
        if value:
            return "de" if value.lower().startswith("de") else "en"
    return DEFAULT_LOCALE


def t(key: str, **values: object) -> str:
    """The message `key` in the shell user's language (`env_locale`), for the CLI and the load test."""
    return text(key, env_locale(), **values)
