"""Flexi's signing keys and the started logins, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from flexi.db.engine import session_factory
from flexi.db.models import LtiLogin, LtiPlatform, utcnow
from flexi.lti import keys, logins
from flexi.lti.errors import LtiError

pytestmark = pytest.mark.db


def test_one_key_is_made_signs_and_rotation_keeps_the_old_one_published(session: Session) -> None:
    token = keys.sign(session, {"iss": "c1"})
    first = keys.public_jwks(session)
    assert len(first["keys"]) == 1 and "d" not in first["keys"][0]
    claims = jwt.decode(token, KeySet.import_key_set(first)).claims  # type: ignore[arg-type]
    assert claims["iss"] == "c1" and claims["exp"] - claims["iat"] == 300
    new = keys.rotate(session)
    published = keys.public_jwks(session)["keys"]
    assert {k["kid"] for k in published} == {first["keys"][0]["kid"], new}
    assert jwt.decode(keys.sign(session, {}), KeySet.import_key_set({"keys": published})).header["kid"] == new
    keys.rotate(session, retire=True)
    assert len(keys.public_jwks(session)["keys"]) == 1


def _platform(s: Session) -> int:
    row = LtiPlatform(issuer="https://m.example", client_id="c", deployment_ids=["d"], auth_url="https://m.example/a",
                      jwks_url="https://m.example/j")
    s.add(row)
    s.flush()
    return row.id


def test_a_login_is_used_once_by_its_own_browser(db: Engine) -> None:
    with session_factory(db)() as s:
        pid = _platform(s)
        state, nonce = logins.start(s, pid, "secret-A")
        s.commit()
    with session_factory(db)() as s:
        with pytest.raises(LtiError) as err:
            logins.consume(s, state, "secret-B")
        assert err.value.key == "lti_other_browser"
        started = logins.consume(s, state, "secret-A")
        assert (started.platform_id, started.nonce) == (pid, nonce)
        s.commit()
    with session_factory(db)() as s:
        with pytest.raises(LtiError) as err:
            logins.consume(s, state, "secret-A")
        assert err.value.key == "lti_state"


def test_an_expired_login_is_refused(db: Engine) -> None:
    with session_factory(db)() as s:
        state, _nonce = logins.start(s, _platform(s), "secret-A")
        s.execute(update(LtiLogin).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
        with pytest.raises(LtiError) as err:
            logins.consume(s, state, "secret-A")
        assert err.value.key == "lti_state"


def test_a_flood_of_logins_evicts_the_oldest(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logins, "MAX_LOGINS", 3)
    with session_factory(db)() as s:
        pid = _platform(s)
        states = [logins.start(s, pid, "secret-A")[0] for _ in range(5)]
        s.commit()
        assert s.query(LtiLogin).count() == 3
        with pytest.raises(LtiError):
            logins.consume(s, states[0], "secret-A")
        assert logins.consume(s, states[-1], "secret-A").platform_id == pid
