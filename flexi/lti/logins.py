"""Started logins (OIDC third-party initiated login, LTI 1.3 §5.1.1): `state` and `nonce` per login.

The state is bound to the browser that started the login: /lti/login sets a random cookie, and only
the SHA-256 of it is stored with the state's SHA-256. The launch must bring the same cookie (a state
taken to another browser is refused and left for its own browser). A login is used once: the launch
deletes its row, and only the request whose DELETE removed it goes on — on every replica, since the
rows are in the shared database. The id_token's nonce must be the one stored with that row, so a
replayed token has no login left to match. Anyone can start a login, so at most MAX_LOGINS are kept:
beyond, the oldest are dropped — whoever started them, so a flood from many addresses can evict real
people's logins (they click the activity again). What bounds a flood from one address is the per-address
limit at /lti/login (flexi.lti.login_limit); the table stores no address.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from flexi.db.models import LtiLogin, utcnow
from flexi.lti.errors import LtiError

LOGIN_SECONDS = 600
MAX_LOGINS = 50_000  # started, unfinished logins kept at most (anyone can start one); beyond, the oldest go


@dataclass(frozen=True)
class StartedLogin:
    platform_id: int
    nonce: str


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def start(s: Session, platform_id: int, browser_secret: str) -> tuple[str, str]:
    """A new login of `platform_id` for the browser holding `browser_secret`: (state, nonce)."""
    now = utcnow()
    s.execute(delete(LtiLogin).where(LtiLogin.expires_at < now))
    excess = (s.scalar(select(func.count()).select_from(LtiLogin)) or 0) - MAX_LOGINS + 1
    if excess > 0:  # a flood of login initiations evicts the oldest started logins, never refuses everybody
        oldest = select(LtiLogin.state_hash).order_by(LtiLogin.expires_at).limit(excess).scalar_subquery()
        s.execute(delete(LtiLogin).where(LtiLogin.state_hash.in_(oldest)))
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    s.add(LtiLogin(state_hash=digest(state), nonce=nonce, binding=digest(browser_secret), platform_id=platform_id,
                   expires_at=now + timedelta(seconds=LOGIN_SECONDS)))
    s.flush()
    return state, nonce


def consume(s: Session, state: str | None, browser_secret: str | None) -> StartedLogin:
    """The login of `state`, removed so that nobody can use it again; refused when it is unknown,
    expired, already used, or was started in another browser."""
    if not state or len(state) > 200:
        raise LtiError("lti_state", 400, "missing state")
    row = s.scalar(select(LtiLogin).where(LtiLogin.state_hash == digest(state)))
    if row is None or row.expires_at < utcnow():
        raise LtiError("lti_state", 400, "unknown, used or expired state")
    if not browser_secret or not secrets.compare_digest(row.binding, digest(browser_secret)):
        raise LtiError("lti_other_browser", 400, "state from another browser")
    found = StartedLogin(row.platform_id, row.nonce)
    if not s.execute(delete(LtiLogin).where(LtiLogin.state_hash == row.state_hash)).rowcount:
        raise LtiError("lti_state", 400, "state used concurrently")  # another replica took it first
    return found
