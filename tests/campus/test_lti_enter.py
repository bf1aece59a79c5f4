"""What a verified launch writes (flexi.campus.lti._admitted), in process against the real database:
an admin role granted by a platform is recorded and taken back by later launches, never one given
elsewhere; and two first launches at once (the second one's "missing" read is stale) both succeed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from flexi.campus import lti
from flexi.config import load_settings
from flexi.db.models import (
    Assistant,
    Course,
    CourseMember,
    LtiLink,
    LtiPlatform,
    User,
    utcnow,
)
from flexi.lti.claims import RESOURCE_LINK_REQUEST, Launch
from flexi.server.app import create_app
from tests.access_helpers import ServerDB

SYSTEM_ADMIN = "http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator"
COURSE_ADMIN = "http://purl.imsglobal.org/vocab/lis/v2/membership#Administrator"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Any, ServerDB, LtiPlatform]]:
    settings = load_settings(home=tmp_path / "home", auth="on")
    with TestClient(create_app(settings), base_url="http://localhost") as http:
        access = http.app.state.flexi.access  # type: ignore[attr-defined]
        db = ServerDB(settings.home)
        try:
            with access.sessions() as s:
                platform = LtiPlatform(issuer="https://moodle.example", client_id="c1", deployment_ids=["d1"],
                                       auth_url="https://moodle.example/auth", jwks_url="https://moodle.example/jwks",
                                       trust_admins=True)
                s.add(platform)
                s.commit()
                s.refresh(platform)
                s.expunge(platform)
            yield access, db, platform
        finally:
            db.close()


def _facts(platform: LtiPlatform, user: str, roles: list[str], link: str | None = None,
           assistant: str | None = None) -> Launch:
    return Launch(platform_id=platform.id, issuer=platform.issuer, subject=user, message_type=RESOURCE_LINK_REQUEST,
                  deployment_id="d1", roles=roles, context_id="course-1", context_title="Statistik 1",
                  resource_link_id=link, assistant_slug=assistant, name=None, email=None, locale=None,
                  deep_link_return_url=None, deep_link_data=None)


def _role(db: ServerDB, user_id: int) -> str:
    with db.session() as s:
        return s.scalar(select(User.role).where(User.id == user_id))  # type: ignore[return-value]


def test_an_admin_role_from_a_launch_is_taken_back_and_no_other(site: Any) -> None:
    access, db, platform = site
    user_id = lti._admitted(access, platform, _facts(platform, "u-1", [SYSTEM_ADMIN]))[0]
    assert _role(db, user_id) == "admin"
    lti._admitted(access, platform, _facts(platform, "u-1", [LEARNER]))  # the role is gone on the platform
    assert _role(db, user_id) == "student"
    lti._admitted(access, platform, _facts(platform, "u-1", [SYSTEM_ADMIN]))
    assert _role(db, user_id) == "admin"
    distrusted = replace_platform(platform, trust_admins=False)  # Flexi's admin stops trusting the platform
    lti._admitted(access, distrusted, _facts(platform, "u-1", [SYSTEM_ADMIN]))
    assert _role(db, user_id) == "student"
    # a course's Administrator is no site admin
    course_admin = lti._admitted(access, platform, _facts(platform, "u-2", [COURSE_ADMIN]))[0]
    assert _role(db, course_admin) == "student"
    # an admin made so by Flexi's admin keeps the role, whatever the launches say
    other = lti._admitted(access, platform, _facts(platform, "u-3", [LEARNER]))[0]
    db.update_user(other, role="admin")
    lti._admitted(access, platform, _facts(platform, "u-3", [SYSTEM_ADMIN]))
    lti._admitted(access, platform, _facts(platform, "u-3", [LEARNER]))
    lti._admitted(access, distrusted, _facts(platform, "u-3", [LEARNER]))
    assert _role(db, other) == "admin"


def replace_platform(platform: LtiPlatform, **changes: Any) -> LtiPlatform:
    return LtiPlatform(id=platform.id, issuer=platform.issuer, client_id=platform.client_id,
                       deployment_ids=platform.deployment_ids, auth_url=platform.auth_url, jwks_url=platform.jwks_url,
                       trust_admins=changes.get("trust_admins", platform.trust_admins))


def test_a_concurrent_first_launch_is_retried_not_a_500(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    access, db, platform = site
    first = lti._admitted(access, platform, _facts(platform, "u-1", [LEARNER]))[0]
    real = lti._course_named
    stale = {"left": 1}

    def course_named(s: Any, name: str) -> Course | None:  # read before the other launch committed its course
        if stale["left"]:
            stale["left"] -= 1
            return None
        return real(s, name)

    monkeypatch.setattr(lti, "_course_named", course_named)
    second, token, _ticket, _choices, _target = lti._admitted(access, platform, _facts(platform, "u-2", [LEARNER]))
    assert stale["left"] == 0 and token
    with db.session() as s:
        assert s.scalar(select(Course.id).where(Course.name.like("lti-%"))) is not None
        members = s.scalars(select(CourseMember.user_id)).all()
        assert sorted(members) == sorted([first, second])
        assert len(s.scalars(select(Course.id)).all()) == 1


def test_a_resource_link_remembered_twice_at_once_is_retried(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    access, db, platform = site
    lti._admitted(access, platform, _facts(platform, "u-1", [LEARNER]))
    with db.session() as s:
        course_id = s.scalar(select(Course.id))
        now = utcnow()
        s.add(Assistant(slug="tutor", course_id=course_id, owner_id=None, name="Tutor", description="", model="m",
                        system_prompt="", welcome_message="", example_questions=[], options={}, audience="course",
                        show_system_prompt=False, disabled=False, created_at=now, updated_at=now))
        s.commit()
    lti._admitted(access, platform, _facts(platform, "u-1", [LEARNER], link="link-1", assistant="tutor"))
    # the other launch had not remembered the link yet when this one looked
    real_scalar = lti.Session.scalar
    stale = {"left": 1}

    def scalar(self: Any, statement: Any, *a: Any, **kw: Any) -> Any:
        if stale["left"] and "lti_links" in str(statement):
            stale["left"] -= 1
            return None
        return real_scalar(self, statement, *a, **kw)

    monkeypatch.setattr(lti.Session, "scalar", scalar)
    target = lti._admitted(access, platform, _facts(platform, "u-2", [LEARNER], link="link-1", assistant="tutor"))[4]
    assert target == "tutor" and stale["left"] == 0
    with db.session() as s:
        assert len(s.scalars(select(LtiLink.id)).all()) == 1
