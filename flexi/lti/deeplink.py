"""Deep linking (LTI Deep Linking 2.0): a teacher places an assistant in a course.

The deep-linking launch opens a choice page carrying a one-time ticket (its SHA-256 stored with the
platform, deployment, teacher, course and the platform's return URL). The choice is posted back with
the ticket — it is the form's CSRF token, and it is good for that teacher once, for 30 minutes. The
answer is an `LtiDeepLinkingResponse` JWT signed with Flexi's key: one `ltiResourceLink` whose custom
parameter `assistant=<slug>` names the assistant; its first launch remembers the resource link.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from flexi.db.models import LtiDeepLink, LtiPlatform, utcnow
from flexi.lti import keys
from flexi.lti.claims import (DEPLOYMENT_ID, DL_CONTENT_ITEMS, DL_DATA, LTI_VERSION, MESSAGE_TYPE, VERSION)
from flexi.lti.errors import LtiError
from flexi.lti.logins import digest

TICKET_SECONDS = 1800


def open_ticket(s: Session, platform_id: int, deployment_id: str, user_id: int, course_id: int, return_url: str,
                data: str | None) -> str:
    now = utcnow()
    s.execute(delete(LtiDeepLink).where(LtiDeepLink.expires_at < now))
    ticket = secrets.token_urlsafe(32)
    s.add(LtiDeepLink(ticket_hash=digest(ticket), platform_id=platform_id, deployment_id=deployment_id,
                      user_id=user_id, course_id=course_id, return_url=return_url, data=data,
                      expires_at=now + timedelta(seconds=TICKET_SECONDS)))
    s.flush()
    return ticket


def peek(s: Session, ticket: str | None, user_id: int | None) -> LtiDeepLink:
    """The open request of `ticket` if it is this teacher's and not expired."""
    row = s.get(LtiDeepLink, digest(ticket)) if ticket and len(ticket) <= 200 else None
    if row is None or row.expires_at < utcnow() or user_id is None or row.user_id != user_id:
        raise LtiError("lti_deep_link_expired", 400, "unknown, used or foreign deep-linking ticket")
    return row


def close(s: Session, row: LtiDeepLink) -> None:
    if not s.execute(delete(LtiDeepLink).where(LtiDeepLink.ticket_hash == row.ticket_hash)).rowcount:
        raise LtiError("lti_deep_link_expired", 400, "deep-linking ticket used concurrently")


def response_jwt(s: Session, platform: LtiPlatform, row: LtiDeepLink, launch_url: str, slug: str, title: str,
                 text: str = "") -> str:
    """The signed LtiDeepLinkingResponse for one resource link opening assistant `slug`."""
    item: dict[str, Any] = {"type": "ltiResourceLink", "title": title[:255], "url": launch_url,
                            "custom": {"assistant": slug}}
    if text:
        item["text"] = text[:1000]
    claims: dict[str, Any] = {
        "iss": platform.client_id, "aud": [platform.issuer], "azp": platform.client_id,
        "nonce": secrets.token_urlsafe(16), MESSAGE_TYPE: "LtiDeepLinkingResponse", VERSION: LTI_VERSION,
        DEPLOYMENT_ID: row.deployment_id, DL_CONTENT_ITEMS: [item],
    }
    if row.data is not None:
        claims[DL_DATA] = json.loads(row.data)
    return keys.sign(s, claims)


def platform_of(s: Session, row: LtiDeepLink) -> LtiPlatform:
    platform = s.get(LtiPlatform, row.platform_id)
    if platform is None:
        raise LtiError("lti_unknown_platform", 400, "platform removed")
    return platform


