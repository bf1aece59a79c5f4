"""Checking a launch's id_token (LTI 1.3 Core §5.1.3, IMS Security Framework §5.1.3).

In this order: the token's form and algorithm (RS256 only: nothing the token says chooses a weaker
check), its signature against the platform's published keys (the key named by `kid`; the key set is
fetched again once when the kid is unknown), then the claims: `iss` is the platform's issuer, `aud` names
Flexi's client id (and `azp` does when there are several audiences, or when present), `exp` is not past
and `iat` not in the future (LEEWAY seconds of clock skew), `nonce` is the one of this browser's login,
the LTI version is 1.3.0, the message type is one Flexi handles, and the deployment id is one
registered for the platform. Each refusal has its own message key; the log gets that word only.
"""

from __future__ import annotations

import json
import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from flexi.db.models import LtiPlatform
from flexi.lti.claims import DEPLOYMENT_ID, LTI_VERSION, MESSAGE_TYPE, MESSAGE_TYPES, VERSION
from flexi.lti.errors import LtiError
from flexi.lti.platform_keys import PlatformKeys

LEEWAY = 60
MAX_TOKEN_CHARS = 64 * 1024


def _header(id_token: str) -> dict[str, Any]:
    if not id_token or len(id_token) > MAX_TOKEN_CHARS or id_token.count(".") != 2:
        raise LtiError("lti_token", 401, "malformed id_token")
    try:
        header = extract_compact(id_token.encode("ascii")).protected
    except (JoseError, ValueError, UnicodeError, json.JSONDecodeError):
        raise LtiError("lti_token", 401, "malformed id_token") from None
    if header.get("alg") != "RS256":
        raise LtiError("lti_signature", 401, "algorithm is not RS256")
    return dict(header)


async def verify(id_token: str | None, platform: LtiPlatform, nonce: str, keys: PlatformKeys) -> dict[str, Any]:
    """The verified claims of `id_token` from `platform` for the login whose nonce is `nonce`."""
    header = _header(id_token or "")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    key_set = await keys.key_set(platform.jwks_url, kid, trusted=platform.registered_by == "admin")
    try:
        token = jwt.decode(id_token or "", key_set, algorithms=["RS256"])
    except (JoseError, ValueError, TypeError, KeyError):
        raise LtiError("lti_signature", 401, "signature does not verify") from None
    claims = dict(token.claims)
    check_claims(claims, platform, nonce)
    return claims


def check_claims(claims: dict[str, Any], platform: LtiPlatform, nonce: str, now: float | None = None) -> None:
    now = time.time() if now is None else now
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    azp = claims.get("azp")
    exp, iat = claims.get("exp"), claims.get("iat")
    checks = [
        (claims.get("iss") == platform.issuer, "lti_issuer", "iss"),
        (platform.client_id in audiences, "lti_audience", "aud"),
        (azp == platform.client_id if len(audiences) > 1 or azp is not None else True, "lti_audience", "azp"),
        (isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp > now - LEEWAY, "lti_expired", "exp"),
        (isinstance(iat, (int, float)) and not isinstance(iat, bool) and iat < now + LEEWAY, "lti_expired", "iat"),
        (isinstance(claims.get("nonce"), str) and claims["nonce"] == nonce, "lti_nonce", "nonce"),
        (claims.get(VERSION) == LTI_VERSION, "lti_version", "version"),
        (claims.get(MESSAGE_TYPE) in MESSAGE_TYPES, "lti_message_type", "message type"),
        (isinstance(claims.get(DEPLOYMENT_ID), str) and claims[DEPLOYMENT_ID] in (platform.deployment_ids or []),
         "lti_deployment", "deployment id"),
        (isinstance(claims.get("sub"), str) and 0 < len(claims["sub"]) <= 255, "lti_no_user", "sub"),
    ]
    for ok, key, what in checks:
        if not ok:
            raise LtiError(key, 401 if key != "lti_deployment" else 403, f"{what} does not match")
