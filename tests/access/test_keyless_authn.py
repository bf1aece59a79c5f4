"""FLEXI_KEYLESS_CLIENTS (config) and `Authenticator.keyless` (which address acts as whom), on SQLite and
PostgreSQL; the HTTP side (credentials first, inference routes only, trusted proxies) is in test_keyless.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from flexi.access.authn import Authenticator
from flexi.config import Settings
from flexi.db.models import ApiKey, User, utcnow


def test_the_two_spellings_of_the_setting() -> None:
    compact = Settings(keyless_clients="10.1.2.3=moodle, 10.1.9.0/28=key:flx_ab12cd34 ,2001:db8::/64=m2")
    assert [(c.network, c.user, c.key) for c in compact.keyless_clients] == [
        ("10.1.2.3/32", "moodle", None), ("10.1.9.0/28", None, "flx_ab12cd34"), ("2001:db8::/64", "m2", None)]
    as_json = Settings(keyless_clients='[{"network": "10.1.2.3", "key": "flx_ab12cd34"}]')
    assert as_json.keyless_clients[0].key == "flx_ab12cd34"
    assert Settings().keyless_clients == []


@pytest.mark.parametrize("value", ["10.1.2.3", "10.1.2.3=", "not-an-ip=moodle", "10.1.2.3=key:secret",
                                   '[{"network": "10.1.2.3"}]', '[{"network": "10.1.2.3", "user": "a", "key": "flx_a"}]',
                                   '[{"network": "10.1.2.3", "user": "a", "role": "admin"}]'])
def test_bad_settings_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(keyless_clients=value)


def test_which_address_acts_as_whom(db: Engine) -> None:
    with Session(db) as s:
        site = User(subject="moodle", pseudonym="m" * 64, role="service")
        other = User(subject="other-site", pseudonym="o" * 64, role="service")
        teacher = User(subject="teach", pseudonym="t" * 64, role="teacher")
        off = User(subject="gone", pseudonym="g" * 64, role="service", disabled_at=utcnow())
        s.add_all([site, other, teacher, off])
        s.flush()
        s.add(ApiKey(prefix="flx_site0001", secret_hash="0" * 64, owner_id=site.id, scopes=["inference"]))
        s.commit()
        site_id, other_id = site.id, other.id
    settings = Settings(keyless_clients="10.0.0.1=key:flx_site0001,10.0.1.0/24=other-site,10.0.2.1=teach,"
                                        "10.0.3.1=gone,10.0.4.1=nobody,fd00::/8=other-site")
    authn = Authenticator(db, settings, b"k" * 32)
    by_key = authn.keyless("10.0.0.1")
    assert by_key is not None and (by_key.user_id, by_key.key_prefix) == (site_id, "flx_site0001")
    by_user = authn.keyless("10.0.1.77")
    assert by_user is not None and (by_user.user_id, by_user.key_id) == (other_id, None)
    assert authn.keyless("fd00::5") is not None and authn.keyless("fd00::5").user_id == other_id  # type: ignore[union-attr]
    mapped = authn.keyless("::ffff:10.0.0.1")  # an IPv4 client of a dual-stack listener
    assert mapped is not None and mapped.user_id == site_id
    for address in ("10.0.0.2", "10.0.2.1", "10.0.3.1", "10.0.4.1", "unknown", "", "::ffff:10.0.0.2"):
        assert authn.keyless(address) is None, address  # not listed, a teacher, disabled, missing, no address
    assert Authenticator(db, Settings(), b"k" * 32).keyless("10.0.0.1") is None


def test_a_user_mapping_is_warned_about_at_start(db: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Per-student shares and quotas need a key (`key = "flx_…"`); a `user =` mapping shares one budget."""
    import logging

    with caplog.at_level(logging.WARNING, "flexi"):
        Authenticator(db, Settings(keyless_clients="10.0.1.0/24=moodle,10.0.0.1=key:flx_site0001"), b"k" * 32)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "10.0.1.0/24" in warned[0] and "moodle" in warned[0] and "one budget" in warned[0]
