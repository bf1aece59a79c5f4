"""Pseudonyms: keyed, stable, and the key lives outside the database."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flexi.db.pseudonym import KEY_ENV, KEY_FILE, load_key, pseudonymize

KEY_A = b"a" * 32
KEY_B = b"b" * 32


def test_stable_for_the_same_key_and_different_for_another() -> None:
    assert pseudonymize("alice@uni", KEY_A) == pseudonymize("alice@uni", KEY_A)
    assert pseudonymize("alice@uni", KEY_A) != pseudonymize("alice@uni", KEY_B)
    assert pseudonymize("alice@uni", KEY_A) != pseudonymize("bob@uni", KEY_A)
    value = pseudonymize("alice@uni", KEY_A)
    assert len(value) == 64 and "alice" not in value


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    key = load_key(tmp_path, environ={})
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64
    assert load_key(tmp_path, environ={}) == key
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind
    assert pseudonymize("s", load_key(tmp_path, environ={})) == pseudonymize("s", key)


def test_environment_key_wins_and_creates_no_file(tmp_path: Path) -> None:
    assert load_key(tmp_path, environ={KEY_ENV: "k" * 40}) == b"k" * 40
    assert not (tmp_path / KEY_FILE).exists()


def test_short_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=KEY_ENV):
        load_key(tmp_path, environ={KEY_ENV: "short"})
    (tmp_path / KEY_FILE).write_text("tiny\n")
    with pytest.raises(ValueError, match="no usable key"):
        load_key(tmp_path, environ={})


def test_different_homes_get_different_keys(tmp_path: Path) -> None:
    assert load_key(tmp_path / "a", environ={}) != load_key(tmp_path / "b", environ={})
