"""The LTI 1.3 claims Flexi reads, and how a platform's roles become Flexi roles.

Roles (LTI 1.3 §5.3.7, LIS vocabulary; Moodle sends the full URIs): Instructor (and ContentDeveloper,
Mentor is not) → teacher of the launched course; TeachingAssistant → tutor; Learner → student. An
Administrator (membership, institution or system role) is a teacher of the launched course only — never
a Flexi admin, unless the platform is registered with `trust_admins` and the role is the system or
institution Administrator (a course's Administrator is no site admin), because a Moodle site admin is not
the computing centre's Flexi admin. No known role → student (least privilege).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
MESSAGE_TYPE = LTI + "message_type"
VERSION = LTI + "version"
DEPLOYMENT_ID = LTI + "deployment_id"
ROLES = LTI + "roles"
CONTEXT = LTI + "context"
RESOURCE_LINK = LTI + "resource_link"
CUSTOM = LTI + "custom"
TARGET_LINK_URI = LTI + "target_link_uri"
LAUNCH_PRESENTATION = LTI + "launch_presentation"
DL_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
DL_CONTENT_ITEMS = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items"
DL_DATA = "https://purl.imsglobal.org/spec/lti-dl/claim/data"
TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-platform-configuration"

RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"
DEEP_LINKING_REQUEST = "LtiDeepLinkingRequest"
MESSAGE_TYPES = (RESOURCE_LINK_REQUEST, DEEP_LINKING_REQUEST)
LTI_VERSION = "1.3.0"

_MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
_SUB_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership/"
_ADMINS = ("http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator",
           "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator")
_COURSE_ROLES = {"Instructor": "teacher", "ContentDeveloper": "teacher", "Administrator": "teacher",
                 "TeachingAssistant": "tutor", "Learner": "student"}


def _context_role(uri: str) -> str | None:
    """"Instructor" from ".../membership#Instructor", "TeachingAssistant" from
    ".../membership/Instructor#TeachingAssistant", the deprecated short forms as they are; else None
    (institution and system roles say nothing about this course)."""
    if uri.startswith(_MEMBERSHIP):
        return uri[len(_MEMBERSHIP):]
    if uri.startswith(_SUB_ROLE):
        principal, _, sub = uri[len(_SUB_ROLE):].partition("#")
        return sub if sub == "TeachingAssistant" else principal
    return uri if uri.isalpha() else None


def course_role(roles: list[str]) -> str:
    """The Flexi course role (teacher > tutor > student) of a person with these LTI roles."""
    found = {_COURSE_ROLES.get(_context_role(uri) or "", "") for uri in roles}
    if any(uri in _ADMINS for uri in roles):
        found.add("teacher")
    return next((role for role in ("teacher", "tutor", "student") if role in found), "student")


def is_platform_admin(roles: list[str]) -> bool:
    """Whether the roles name a platform administrator: the system or institution role only. A course's
    `membership#Administrator` (or the short `Administrator`) administers that course, not the site."""
    return any(uri in _ADMINS for uri in roles)


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value.strip() else None


def _opaque(value: Any) -> str | None:
    """The platform's opaque deep-linking `data`, kept as JSON to be echoed unchanged (bounded)."""
    if value is None:
        return None
    text = json.dumps(value)
    return text if len(text) <= 4000 else None


@dataclass(frozen=True)
class Launch:
    """What Flexi takes from a verified launch (the token itself is not kept)."""

    platform_id: int
    issuer: str
    subject: str
    message_type: str
    deployment_id: str
    roles: list[str]
    context_id: str | None
    context_title: str | None
    resource_link_id: str | None
    assistant_slug: str | None  # the custom parameter `assistant`
    name: str | None
    email: str | None
    locale: str | None  # "de" or "en" when the platform says so
    deep_link_return_url: str | None
    deep_link_data: str | None  # JSON of the platform's opaque `data`, echoed in the answer

    @property
    def course_role(self) -> str:
        return course_role(self.roles)

    @property
    def is_teacher(self) -> bool:
        return self.course_role == "teacher"


def launch_from_claims(claims: dict[str, Any], platform_id: int) -> Launch:
    """The launch's facts from verified claims (shapes are checked; what is missing stays None)."""
    roles = claims.get(ROLES)
    context = claims.get(CONTEXT) if isinstance(claims.get(CONTEXT), dict) else {}
    link = claims.get(RESOURCE_LINK) if isinstance(claims.get(RESOURCE_LINK), dict) else {}
    custom = claims.get(CUSTOM) if isinstance(claims.get(CUSTOM), dict) else {}
    dl = claims.get(DL_SETTINGS) if isinstance(claims.get(DL_SETTINGS), dict) else {}
    locale = _text(claims.get("locale"), 35)
    return Launch(
        platform_id=platform_id, issuer=str(claims.get("iss")), subject=str(claims.get("sub")),
        message_type=str(claims.get(MESSAGE_TYPE)), deployment_id=str(claims.get(DEPLOYMENT_ID)),
        roles=[r for r in roles if isinstance(r, str)][:50] if isinstance(roles, list) else [],
        context_id=_text(context.get("id"), 255),
        context_title=_text(context.get("title"), 255) or _text(context.get("label"), 255),
        resource_link_id=_text(link.get("id"), 255),
        assistant_slug=_text(custom.get("assistant"), 32),
        name=_text(claims.get("name"), 255), email=_text(claims.get("email"), 320),
        locale=locale[:2].lower() if locale and locale[:2].lower() in ("de", "en") else None,
        deep_link_return_url=_text(dl.get("deep_link_return_url"), 2000),
        deep_link_data=_opaque(dl.get("data")),
    )
