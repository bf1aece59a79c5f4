"""API keys: shown once, stored as a hash, verified in constant time, revocable."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from flexi.db.apikeys import KEY_PATTERN, create_key, list_keys, prefix_of, revoke_key, verify_key
from flexi.db.models import ApiKey, User


@pytest.fixture
def owner(session: Session) -> User:
    user = User(subject="owner@uni", pseudonym="p-owner", role="student")
    session.add(user)
    session.commit()
    return user


def test_create_verify_revoke(session: Session, owner: User) -> None:
    created = create_key(session, owner.id, "laptop", scopes=["chat"], models=["smollm2:*"])
    session.commit()
    assert KEY_PATTERN.match(created.key) and created.key.startswith(created.info.prefix + "_")
    assert created.key not in repr(created)

    found = verify_key(session, created.key)
    assert found is not None and found.id == created.info.id and found.owner.subject == "owner@uni"
    assert (found.scopes, found.models) == (["chat"], ["smollm2:*"])
    assert found.last_used_at is not None

    assert revoke_key(session, created.info.id, owner_id=owner.id)
    session.commit()
    assert verify_key(session, created.key) is None


def test_only_the_hash_is_stored(db: Engine, session: Session, owner: User) -> None:
    created = create_key(session, owner.id, "k")
    session.commit()
    secret = created.key.split("_", 2)[2]
    with db.connect() as c:
        row = c.execute(text("SELECT * FROM api_keys")).mappings().one()
    assert row["prefix"] == created.info.prefix
    assert row["secret_hash"] == hashlib.sha256(created.key.encode()).hexdigest()
    for value in row.values():
        assert secret not in str(value) and created.key not in str(value)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "flx_",
        "' OR 1=1--",
        "flx_' OR 1=1--",
        "flx_aaaaaaaa_' OR '1'='1",
        "flx_aaaaaaaa_" + "A" * 42 + "'",
        "flx_aaaaaaaa_" + "A" * 43 + "; DROP TABLE api_keys;--",
        "Bearer flx_aaaaaaaa_" + "A" * 43,
        "x" * 10_000,
        "flx_aaaaaaaa_\x00" + "A" * 42,
    ],
)
def test_malformed_keys_fail_cleanly(session: Session, owner: User, presented: str) -> None:
    create_key(session, owner.id)
    session.commit()
    assert verify_key(session, presented) is None
    assert session.scalar(select(ApiKey.id)) is not None  # nothing dropped or changed


def test_wrong_secret_with_a_real_prefix_fails(session: Session, owner: User) -> None:
    created = create_key(session, owner.id)
    session.commit()
    secret = created.key.rsplit("_", 1)[1]
    wrong = created.info.prefix + "_" + ("B" if secret[0] != "B" else "C") + secret[1:]
    assert verify_key(session, wrong) is None
    assert verify_key(session, created.info.prefix + "_" + "A" * 43) is None
    assert verify_key(session, created.key) is not None


def test_expired_key_and_disabled_owner_fail(session: Session, owner: User) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    created = create_key(session, owner.id, expires_at=now + timedelta(days=1), now=now)
    session.commit()
    assert verify_key(session, created.key, now=now) is not None
    assert verify_key(session, created.key, now=now + timedelta(days=1)) is None
    owner.disabled_at = now
    session.commit()
    assert verify_key(session, created.key, now=now) is None


def test_last_used_is_written_at_most_once_a_minute(session: Session, owner: User) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    created = create_key(session, owner.id, now=now)
    session.commit()
    assert verify_key(session, created.key, now=now).last_used_at == now
    assert verify_key(session, created.key, now=now + timedelta(seconds=30)).last_used_at == now
    assert verify_key(session, created.key, now=now + timedelta(seconds=61)).last_used_at == now + timedelta(seconds=61)
    assert verify_key(session, created.key, now=now + timedelta(hours=1), touch=False).last_used_at == now + timedelta(seconds=61)


def test_list_and_revoke_are_per_owner(session: Session, owner: User) -> None:
    other = User(subject="other@uni", pseudonym="p-other", role="student")
    session.add(other)
    session.flush()
    mine = [create_key(session, owner.id, f"k{i}") for i in range(2)]
    theirs = create_key(session, other.id, "theirs")
    session.commit()

    listed = list_keys(session, owner.id)
    assert [k.name for k in listed] == ["k0", "k1"]
    for info in listed:
        assert not hasattr(info, "secret_hash") and not hasattr(info, "key")
        assert all(m.key not in repr(info) for m in mine)

    assert not revoke_key(session, theirs.info.id, owner_id=owner.id)  # someone else's key: as if absent
    assert not revoke_key(session, 10_000, owner_id=owner.id)
    assert verify_key(session, theirs.key) is not None
    assert revoke_key(session, mine[0].info.id, owner_id=owner.id)
    session.commit()
    assert [k.name for k in list_keys(session, owner.id, include_revoked=False)] == ["k1"]
    first_revoked = list_keys(session, owner.id)[0].revoked_at
    assert revoke_key(session, mine[0].info.id) and list_keys(session, owner.id)[0].revoked_at == first_revoked


def test_prefix_of_is_safe_to_log() -> None:
    assert prefix_of("flx_ab12cd34_" + "x" * 43) == "flx_ab12cd34"
    assert prefix_of("flx_ab12cd34_short") is None
