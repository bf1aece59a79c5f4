"""Host parsing, language choice and the message table of the CLI."""

from __future__ import annotations

import pytest

from flexi import i18n
from flexi.config import server_url


@pytest.mark.parametrize("value,url", [
    ("", "http://127.0.0.1:11434"),
    ("127.0.0.1:11434", "http://127.0.0.1:11434"),
    (":8080", "http://127.0.0.1:8080"),
    ("0.0.0.0:11434", "http://127.0.0.1:11434"),
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("http://gpu01.example.org:9000", "http://gpu01.example.org:9000"),
    ("https://flexi.example.org:443/", "https://flexi.example.org:443"),
    ("example.org", "http://example.org:11434"),
    ("[::1]:5000", "http://[::1]:5000"),
    ("[::]:5000", "http://[::1]:5000"),
])
def test_server_url(value, url):
    assert server_url(value) == url


def test_server_url_reads_flexi_host(monkeypatch):
    monkeypatch.setenv("FLEXI_HOST", ":1234")
    assert server_url() == "http://127.0.0.1:1234"
    monkeypatch.delenv("FLEXI_HOST")
    assert server_url() == "http://127.0.0.1:11434"


@pytest.mark.parametrize("env,lang", [
    ({}, "en"),
    ({"LANG": "de_DE.UTF-8"}, "de"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LC_MESSAGES": "de_AT", "LANG": "en_US"}, "de"),
    ({"LC_ALL": "de_CH.UTF-8", "LANG": "en_US"}, "de"),
    ({"LC_ALL": "C", "LANG": "de_DE"}, "en"),
])
def test_language(env, lang):
    assert i18n.env_locale(env) == lang


def test_both_languages_have_the_same_messages():
    assert all(texts.keys() == {"de", "en"} for texts in i18n.CATALOGUE.values())


def test_t_formats_in_the_chosen_language(monkeypatch):
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    assert i18n.t("deleted", name="x") == "'x' gelöscht"
    monkeypatch.setenv("LANG", "en_GB.UTF-8")
    assert i18n.t("deleted", name="x") == "deleted 'x'"
