"""Dynamic registration (IMS LTI Dynamic Registration 1.0): Moodle's "register a tool by URL".

The platform opens `/lti/register?openid_configuration=…&registration_token=…` in a window; Flexi
fetches that configuration, checks it names an issuer on the same origin as the URL it came from
(spec §3.5.1), posts its own registration to the platform's `registration_endpoint` with the
registration token, stores the platform with the client id and deployment id it gets back, and the
page tells the platform window to close (`org.imsglobal.lti.close`).

Who may register: only someone holding a one-time registration token an administrator made
(`flexi lti registration-url`, POST /admin/lti/registrations); without it anybody could register a
made-up platform and launch themselves into courses. All fetches go through the network guard
(`flexi.lti.fetch`).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy.orm import Session

from flexi.db.models import LtiRegistrationToken, utcnow
from flexi.lti import platforms
from flexi.lti.claims import DEEP_LINKING_REQUEST, PLATFORM_CONFIGURATION, TOOL_CONFIGURATION
from flexi.lti.errors import LtiError
from flexi.lti.fetch import policy, request_json
from flexi.lti.logins import digest

TOKEN_HOURS = 24


def new_token(s: Session, hours: int = TOKEN_HOURS) -> tuple[str, Any]:
    token = secrets.token_urlsafe(24)
    expires = utcnow() + timedelta(hours=hours)
    s.add(LtiRegistrationToken(token_hash=digest(token), expires_at=expires))
    s.flush()
    return token, expires


def check_token(s: Session, token: str | None) -> None:
    """Refuse an unknown or expired registration token (before Flexi fetches anything for it)."""
    row = s.get(LtiRegistrationToken, digest(token)) if token and len(token) <= 200 else None
    if row is None or row.expires_at < utcnow():
        raise LtiError("lti_registration_token", 403, "no valid registration token")


def use_token(s: Session, token: str | None) -> None:
    """Spend a registration token (refused when unknown, used or expired)."""
    now = utcnow()
    s.execute(delete(LtiRegistrationToken).where(LtiRegistrationToken.expires_at < now))
    if not token or len(token) > 200 or not s.execute(delete(LtiRegistrationToken).where(
            LtiRegistrationToken.token_hash == digest(token))).rowcount:
        raise LtiError("lti_registration_token", 403, "no valid registration token")


def tool_registration(base_url: str, name: str = "Flexi") -> dict[str, Any]:
    """Flexi's client registration as the spec and Moodle expect it."""
    host = urlsplit(base_url).netloc
    return {
        "application_type": "web", "response_types": ["id_token"], "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": base_url + "/lti/login", "redirect_uris": [base_url + "/lti/launch"],
        "client_name": name, "jwks_uri": base_url + "/lti/jwks", "logo_uri": base_url + "/ui/assets/favicon.svg",
        "token_endpoint_auth_method": "private_key_jwt", "scope": "",
        TOOL_CONFIGURATION: {
            "domain": host, "target_link_uri": base_url + "/lti/launch",
            "description": "Flexi course assistants / KI-Kursassistenten",
            "claims": ["iss", "sub", "name", "email", "locale"],
            "messages": [{"type": DEEP_LINKING_REQUEST, "target_link_uri": base_url + "/lti/launch",
                          "label": "Flexi"}],
        },
    }


def _same_origin(a: str, b: str) -> bool:
    return platforms.origin(a) == platforms.origin(b)


async def register(config_url: str | None, registration_token: str | None, base_url: str,
                   allow_hosts: list[str]) -> platforms.PlatformSpec:
    """Fetch the platform's configuration and register Flexi there; the platform to store (no database
    work here: nothing is held open while the platform answers)."""
    url = platforms.check_url(config_url or "", "openid_configuration")
    guard = policy(allow_hosts)
    config = await request_json("GET", url, guard)
    issuer = config.get("issuer")
    needed = ("authorization_endpoint", "jwks_uri", "registration_endpoint")
    if not isinstance(issuer, str) or not all(isinstance(config.get(k), str) for k in needed):
        raise LtiError("lti_registration_config", 502, "configuration lacks issuer or endpoints")
    if not _same_origin(issuer, url):
        raise LtiError("lti_registration_config", 502, "issuer is not the configuration URL's origin")
    for key in needed:
        platforms.check_url(config[key], key)
    answer = await request_json("POST", config["registration_endpoint"], guard, body=tool_registration(base_url),
                                token=registration_token or None)
    client_id = answer.get("client_id")
    tool = answer.get(TOOL_CONFIGURATION) if isinstance(answer.get(TOOL_CONFIGURATION), dict) else {}
    deployment = tool.get("deployment_id")
    if not isinstance(client_id, str) or not client_id:
        raise LtiError("lti_registration_config", 502, "registration answer has no client_id")
    product = config.get(PLATFORM_CONFIGURATION) if isinstance(config.get(PLATFORM_CONFIGURATION), dict) else {}
    name = product.get("product_family_code") if isinstance(product.get("product_family_code"), str) else ""
    token_url = config.get("token_endpoint") if isinstance(config.get("token_endpoint"), str) else ""
    return platforms.PlatformSpec(
        issuer=issuer, client_id=client_id, auth_url=config["authorization_endpoint"], jwks_url=config["jwks_uri"],
        token_url=token_url, deployment_ids=(deployment,) if isinstance(deployment, str) else (),
        name=f"{name} {urlsplit(issuer).hostname}".strip(), registered_by="dynamic")
