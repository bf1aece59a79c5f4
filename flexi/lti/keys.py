"""Flexi's own RSA keys: they sign deep-linking answers, and platforms check them at /lti/jwks.

Kept in the database (`lti_keys`), not in FLEXI_HOME, so every replica signs with the same key and
publishes the same set. Created on first use (2048-bit RSA, RS256). Rotation: `flexi lti rotate-key`
(or POST /admin/lti/keys/rotate) adds a new key that signs from then on; the older keys stay published
until `--retire` removes them, so a platform that cached the old set still finds every `kid`.
A database dump contains the private key: it lets someone sign deep links to the registered
platforms (no more — launches are signed by the platforms, not by Flexi).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from flexi.db.models import LtiKey

ALGORITHM = "RS256"


def _new_key(s: Session) -> LtiKey:
    kid = secrets.token_urlsafe(12)
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": ALGORITHM}, private=True)
    row = LtiKey(kid=kid, private_pem=key.as_pem(private=True).decode("ascii"), active=True)
    s.add(row)
    s.flush()
    return row


def signing_key(s: Session) -> tuple[str, RSAKey]:
    """The newest active key (made now when there is none)."""
    row = s.scalars(select(LtiKey).where(LtiKey.active).order_by(LtiKey.created_at.desc(), LtiKey.kid)).first()
    if row is None:
        row = _new_key(s)
    return row.kid, RSAKey.import_key(row.private_pem, {"kid": row.kid, "use": "sig", "alg": ALGORITHM})


def public_jwks(s: Session) -> dict[str, Any]:
    """The JSON Web Key Set of every published key (public parts only)."""
    rows = s.scalars(select(LtiKey).order_by(LtiKey.created_at.desc(), LtiKey.kid)).all()
    if not rows:
        signing_key(s)
        rows = s.scalars(select(LtiKey)).all()
    keys = []
    for row in rows:
        key = RSAKey.import_key(row.private_pem, {"kid": row.kid, "use": "sig", "alg": ALGORITHM})
        keys.append(key.as_dict(private=False))
    return {"keys": keys}


def rotate(s: Session, retire: bool = False) -> str:
    """A new signing key; with `retire`, every older key is removed from the published set."""
    row = _new_key(s)
    if retire:
        s.execute(delete(LtiKey).where(LtiKey.kid != row.kid))
    else:
        for old in s.scalars(select(LtiKey).where(LtiKey.kid != row.kid)).all():
            old.active = False
    s.flush()
    return row.kid


def sign(s: Session, claims: dict[str, Any], lifetime: int = 300) -> str:
    """A JWT of `claims` signed with the current key, valid for `lifetime` seconds."""
    kid, key = signing_key(s)
    now = int(time.time())
    return jwt.encode({"alg": ALGORITHM, "kid": kid, "typ": "JWT"}, {"iat": now, "exp": now + lifetime, **claims}, key)
