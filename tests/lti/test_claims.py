"""LTI roles → Flexi roles, and the claim checks of flexi.lti.launch one by one (no network, no database)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from flexi.db.models import LtiPlatform
from flexi.lti.claims import DEPLOYMENT_ID, MESSAGE_TYPE, VERSION, course_role, is_platform_admin, launch_from_claims
from flexi.lti.errors import LtiError
from flexi.lti.launch import LEEWAY, check_claims

M = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


@pytest.mark.parametrize("roles, expected", [
    ([M + "Learner"], "student"),
    ([M + "Instructor"], "teacher"),
    ([M + "Learner", M + "Instructor"], "teacher"),
    (["http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"], "tutor"),
    ([M + "ContentDeveloper"], "teacher"),
    ([M + "Administrator"], "teacher"),
    (["http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator"], "teacher"),
    (["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Instructor"], "student"),  # says nothing of the course
    (["Instructor"], "teacher"), ([M + "Mentor"], "student"), ([], "student"),
])
def test_roles_map_to_course_roles(roles: list[str], expected: str) -> None:
    assert course_role(roles) == expected


def test_only_site_administrator_roles_count_as_platform_admin() -> None:
    assert is_platform_admin(["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"])
    assert is_platform_admin(["http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator"])
    # a course's Administrator (membership role, or the deprecated short form) administers that course only
    assert not is_platform_admin([M + "Administrator"])
    assert not is_platform_admin(["Administrator"])
    assert not is_platform_admin([M + "Instructor", "admin", "http://x.example/#Administrator"])


def _platform() -> LtiPlatform:
    return LtiPlatform(id=1, issuer="https://moodle.example", client_id="c1", deployment_ids=["d1"],
                       auth_url="https://moodle.example/auth", jwks_url="https://moodle.example/jwks")


class FromNow(int):
    """A time claim given as seconds from the moment the claims are built (not from test collection, which
    may be minutes earlier in a long run)."""


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "https://moodle.example", "aud": "c1", "sub": "7", "iat": now, "exp": now + 300, "nonce": "n1",
              VERSION: "1.3.0", MESSAGE_TYPE: "LtiResourceLinkRequest", DEPLOYMENT_ID: "d1"}
    claims.update({k: now + int(v) if isinstance(v, FromNow) else v for k, v in changes.items()})
    return {k: v for k, v in claims.items() if v is not None}


def test_good_claims_pass() -> None:
    check_claims(_claims(), _platform(), "n1")
    check_claims(_claims(aud=["c1", "other"], azp="c1"), _platform(), "n1")
    check_claims(_claims(exp=FromNow(-LEEWAY + 5)), _platform(), "n1")  # within the clock skew


@pytest.mark.parametrize("changes, key", [
    ({"iss": "https://other.example"}, "lti_issuer"),
    ({"aud": "other"}, "lti_audience"),
    ({"aud": ["c1", "other"]}, "lti_audience"),  # several audiences need azp
    ({"aud": ["c1", "other"], "azp": "other"}, "lti_audience"),
    ({"azp": "other"}, "lti_audience"),
    ({"exp": None}, "lti_expired"),
    ({"exp": FromNow(-LEEWAY - 5)}, "lti_expired"),
    ({"exp": True}, "lti_expired"),
    ({"iat": FromNow(LEEWAY + 60)}, "lti_expired"),
    ({"nonce": "n2"}, "lti_nonce"),
    ({"nonce": None}, "lti_nonce"),
    ({VERSION: "1.1"}, "lti_version"),
    ({MESSAGE_TYPE: "LtiSubmissionReviewRequest"}, "lti_message_type"),
    ({DEPLOYMENT_ID: "d2"}, "lti_deployment"),
    ({"sub": ""}, "lti_no_user"),
    ({"sub": "x" * 256}, "lti_no_user"),
])
def test_each_bad_claim_is_refused_with_its_own_message(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(LtiError) as err:
        check_claims(_claims(**changes), _platform(), "n1")
    assert err.value.key == key and "n1" not in err.value.reason


def test_launch_facts_take_only_well_formed_claims() -> None:
    facts = launch_from_claims(_claims(**{
        "https://purl.imsglobal.org/spec/lti/claim/context": {"id": "42", "title": "Statistik 1"},
        "https://purl.imsglobal.org/spec/lti/claim/custom": {"assistant": "abc", "other": 1},
        "https://purl.imsglobal.org/spec/lti/claim/roles": [M + "Learner", 5],
        "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings": {"data": {"x": 1}},
        "locale": "de-DE", "name": ["not", "a", "string"]}), 1)
    assert facts.context_id == "42" and facts.context_title == "Statistik 1" and facts.assistant_slug == "abc"
    assert facts.roles == [M + "Learner"] and facts.course_role == "student" and facts.locale == "de"
    assert facts.name is None and facts.deep_link_data == '{"x": 1}' and facts.resource_link_id is None
    assert launch_from_claims(_claims(locale="fr-FR"), 1).locale is None
