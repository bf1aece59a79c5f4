"""Groups and courses through the one generic code path (`Membership` specs), on SQLite.

The per-entity behaviour (validation, hostile input, PostgreSQL) is in tests/db/test_admin_ops.py; here
the same calls run for both specs, so a difference between groups and courses can only come from
what the spec says (course roles, the course quota)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flexi.access import admin_ops as ops
from flexi.access.admin_ops import memberships as ms
from flexi.db.engine import make_engine, session_factory
from flexi.db.migrate import upgrade
from flexi.db.models import Quota, User

KEY = b"k" * 32


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'flexi.db'}", tmp_path)
    upgrade(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def users(session: Session) -> list[User]:
    made = [ops.create_user(session, KEY, name) for name in ("bo", "al")]
    session.commit()
    return made


@pytest.mark.parametrize("spec", [ops.GROUPS, ops.COURSES], ids=lambda spec: spec.kind)
def test_one_code_path_for_groups_and_courses(session: Session, users: list[User], spec: ms.Membership) -> None:
    row = ms.create(spec, session, "INF-1", "Informatik")
    assert isinstance(row, spec.table) and ms.find(spec, session, "INF-1") is row
    with pytest.raises(ops.AdminError, match=f"a {spec.kind} named 'INF-1' exists already") as err:
        ms.create(spec, session, "INF-1")
    assert err.value.status == 409
    assert all(ms.put_member(spec, session, row.id, u.id) for u in users)
    assert ms.put_member(spec, session, row.id, users[0].id) is False  # already a member
    assert [(v["name"], v["members"]) for v in (ms.view(r, n) for r, n in ms.list_all(spec, session))] == [("INF-1", 2)]
    role = spec.default_role  # courses: "student"; groups: no member role
    assert [(u.subject, r) for u, r in ms.members(spec, session, row.id)] == [("al", role), ("bo", role)]
    assert ms.memberships_of(spec, session, users[0].id) == [("INF-1", role)]
    view = ms.member_view(spec, users[0], role)
    assert view["subject"] == "bo" and (view.get("course_role") == role if spec.member_roles else "course_role" not in view)
    ms.remove_member(spec, session, row.id, users[0].id)
    with pytest.raises(ops.AdminError, match=f"bo is not a member of {spec.kind} INF-1") as err:
        ms.remove_member(spec, session, row.id, users[0].id)
    assert err.value.status == 404
    assert ms.remove(spec, session, row.id) is row
    with pytest.raises(ops.AdminError, match=f"{spec.kind} INF-1 not found"):
        ms.find(spec, session, "INF-1")


def test_course_members_have_a_course_role_that_can_change(session: Session, users: list[User]) -> None:
    course = ms.create(ops.COURSES, session, "INF-2")
    assert ms.put_member(ops.COURSES, session, course.id, users[0].id, "tutor") is True
    assert ms.put_member(ops.COURSES, session, course.id, users[0].id, "teacher") is False
    assert ms.members(ops.COURSES, session, course.id)[0][1] == "teacher"
    with pytest.raises(ops.AdminError, match="invalid course role 'dean'"):
        ms.put_member(ops.COURSES, session, course.id, users[1].id, "dean")


def test_only_a_course_takes_its_quota_along(session: Session) -> None:
    course, group = ms.create(ops.COURSES, session, "C"), ms.create(ops.GROUPS, session, "G")
    ops.set_quota(session, "course", course.id, {"tokens_per_day": 10})
    ms.remove(ops.GROUPS, session, group.id)
    assert session.scalar(select(func.count()).select_from(Quota)) == 1
    ms.remove(ops.COURSES, session, course.id)
    assert session.scalar(select(func.count()).select_from(Quota)) == 0


def test_wire_names_come_from_the_spec() -> None:
    assert (ops.GROUPS.id_field, ops.COURSES.id_field, ops.COURSES.role_field) == ("group_id", "course_id", "course_role")
    assert ops.KINDS == {"group": ops.GROUPS, "course": ops.COURSES}
    assert ops.GROUPS.member_roles is None and ops.COURSES.quota_kind == "course"
