"""Administration operations (shared by REST and CLI) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flexi.access import admin_ops as ops
from flexi.access.passwords import verify_password
from flexi.db.apikeys import verify_key
from flexi.db.models import ApiKey, GroupMember, Quota, User
from flexi.db.pseudonym import pseudonymize

KEY = b"k" * 32
HOSTILE = ["' OR 1=1--", "%", "_", "a%b_c", "; DROP TABLE users; --", "\\", "ü∂€😀", "x" * 255, '"', "NULL"]


@pytest.fixture
def admin(session: Session) -> User:
    user = ops.create_user(session, KEY, "root", role="admin", password="correct horse")
    session.commit()
    return user


def test_create_and_show_user(session: Session, admin: User) -> None:
    user = ops.create_user(session, KEY, "alice@uni.example", display_name="Alice", email="alice@uni.example",
                           role="teacher", locale="en")
    session.commit()
    assert user.pseudonym == pseudonymize("alice@uni.example", KEY)
    view = ops.user_view(user)
    assert view["role"] == "teacher" and view["locale"] == "en" and not view["disabled"]
    assert "password_hash" not in view and view["has_password"] is False
    assert verify_password("correct horse", admin.password_hash)
    assert ops.find_user(session, "alice@uni.example").id == user.id
    assert ops.find_user(session, str(user.id)).id == user.id


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"subject": ""}, 400), ({"subject": "a b"}, 400), ({"subject": "a\x00b"}, 400), ({"subject": "x" * 256}, 400),
    ({"subject": "ok", "role": "god"}, 400), ({"subject": "ok", "locale": "fr"}, 400),
    ({"subject": "ok", "email": "nope"}, 400), ({"subject": "ok", "password": "short"}, 400),
    ({"subject": "ok", "display_name": "\ud800"}, 400), ({"subject": "root"}, 409),
])
def test_create_user_refuses_bad_input(session: Session, admin: User, kwargs: dict, status: int) -> None:
    with pytest.raises(ops.AdminError) as err:
        ops.create_user(session, KEY, **kwargs)
    assert err.value.status == status
    session.rollback()
    assert session.scalar(select(func.count()).select_from(User)) == 1


def test_list_users_filters_are_data_not_sql(session: Session, admin: User) -> None:
    ops.create_user(session, KEY, "bob_1", role="student")
    ops.create_user(session, KEY, "bobx1", role="student", display_name="100% Bob")
    session.commit()
    assert [u.subject for u in ops.list_users(session, search="bob_")] == ["bob_1"]  # "_" is not a wildcard
    assert [u.subject for u in ops.list_users(session, search="100%")] == ["bobx1"]
    assert [u.subject for u in ops.list_users(session, search="BOB", role="student")] == ["bob_1", "bobx1"]
    for value in HOSTILE:
        assert ops.list_users(session, search=value) == [] or value in ("_", "%")
    assert len(ops.list_users(session, limit=1, offset=1)) == 1
    for bad in ("' OR 1=1--", "admin;"):
        with pytest.raises(ops.AdminError) as err:
            ops.list_users(session, role=bad)
        assert err.value.status == 400
    with pytest.raises(ops.AdminError):
        ops.list_users(session, search="a\x00")
    with pytest.raises(ops.AdminError):
        ops.list_users(session, limit=10**6)
    assert session.scalar(select(func.count()).select_from(User)) == 3


def test_update_disable_and_last_admin(session: Session, admin: User) -> None:
    other = ops.create_user(session, KEY, "carol")
    session.commit()
    change = ops.update_user(session, other.id, {"role": "researcher", "display_name": "Carol"})
    assert change.reduced and other.role == "researcher"
    assert not ops.update_user(session, other.id, {"role": "admin"}).reduced
    change = ops.update_user(session, other.id, {"disabled": True})
    assert change.reduced and other.disabled_at is not None
    ops.update_user(session, other.id, {"disabled": False})
    assert other.disabled_at is None
    session.commit()
    ops.update_user(session, other.id, {"role": "student"})  # another admin (root) remains
    with pytest.raises(ops.AdminError) as err:
        ops.update_user(session, admin.id, {"role": "student"})
    assert err.value.status == 409
    with pytest.raises(ops.AdminError):
        ops.delete_user(session, admin.id)
    with pytest.raises(ops.AdminError):
        ops.update_user(session, admin.id, {"user_id": 5})
    with pytest.raises(ops.AdminError) as err:
        ops.update_user(session, 2**40, {"role": "student"})
    assert err.value.status == 404


def test_password_set_and_clear(session: Session, admin: User) -> None:
    ops.set_password(session, admin.id, "another secret")
    assert verify_password("another secret", admin.password_hash)
    ops.set_password(session, admin.id, None)
    assert admin.password_hash is None


def test_delete_user_takes_keys_memberships_and_quotas(session: Session, admin: User) -> None:
    user = ops.create_user(session, KEY, "dave")
    group = ops.create_group(session, "physics")
    ops.add_group_member(session, group.id, user.id)
    _created, key = ops.create_api_key(session, user.id, name="x")
    ops.set_quota(session, "user", user.id, {"tokens_per_day": 10})
    ops.set_quota(session, "key", key.id, {"tokens_per_day": 5})
    session.commit()
    ops.delete_user(session, user.id)
    session.commit()
    assert session.scalar(select(func.count()).select_from(ApiKey)) == 0
    assert session.scalar(select(func.count()).select_from(GroupMember)) == 0
    assert session.scalar(select(func.count()).select_from(Quota)) == 0


def test_groups_and_courses(session: Session, admin: User) -> None:
    user = ops.create_user(session, KEY, "erin")
    group = ops.create_group(session, "staff", "All staff")
    course = ops.create_course(session, "INF-101", "Intro")
    session.commit()
    with pytest.raises(ops.AdminError) as err:
        ops.create_group(session, "staff")
    assert err.value.status == 409
    session.rollback()
    assert ops.add_group_member(session, group.id, user.id) is True
    assert ops.add_group_member(session, group.id, user.id) is False
    assert [u.subject for u in ops.group_members(session, group.id)] == ["erin"]
    assert ops.set_course_member(session, course.id, user.id, "tutor") is True
    assert ops.set_course_member(session, course.id, user.id, "teacher") is False
    assert [(u.subject, r) for u, r in ops.course_members(session, course.id)] == [("erin", "teacher")]
    with pytest.raises(ops.AdminError):
        ops.set_course_member(session, course.id, user.id, "boss")
    assert [(g.name, n) for g, n in ops.list_groups(session)] == [("staff", 1)]
    assert [(c.name, n) for c, n in ops.list_courses(session, search="inf")] == [("INF-101", 1)]
    for value in HOSTILE:
        ops.list_groups(session, search=value)
        ops.list_courses(session, search=value)
    ops.remove_group_member(session, group.id, user.id)
    with pytest.raises(ops.AdminError) as err:
        ops.remove_group_member(session, group.id, user.id)
    assert err.value.status == 404
    ops.remove_course_member(session, course.id, user.id)
    assert ops.find_group(session, "staff").id == group.id and ops.find_course(session, "INF-101").id == course.id
    ops.delete_group(session, group.id)
    ops.delete_course(session, course.id)
    session.commit()
    with pytest.raises(ops.AdminError) as err:
        ops.get_group(session, group.id)
    assert err.value.status == 404


def test_api_keys(session: Session, admin: User) -> None:
    student = ops.create_user(session, KEY, "frank")
    course = ops.create_course(session, "ML")
    session.commit()
    created, row = ops.create_api_key(session, student.id, name="laptop", models=["smollm2:*"], expires=30,
                                      course_id=course.id)
    session.commit()
    view = ops.key_view(row)
    assert view["scopes"] == ["inference"] and view["course_id"] == course.id and view["state"] == "active"
    assert created.key not in str(view) and "secret_hash" not in view
    assert verify_key(session, created.key) is not None
    with pytest.raises(ops.AdminError) as err:  # admin scopes need an admin owner
        ops.create_api_key(session, student.id, scopes=["admin"])
    assert err.value.status == 400 and err.value.key == "key_scope_owner"
    with pytest.raises(ops.AdminError) as err:  # self-service: only courses one belongs to
        ops.create_api_key(session, student.id, course_id=course.id, require_membership=True)
    assert err.value.status == 404
    for bad in ({"scopes": ["root"]}, {"scopes": []}, {"models": []}, {"models": ["bad model"]}, {"expires": 0},
                {"expires": "2001-01-01"}, {"expires": "tomorrow"}, {"name": "x" * 101}, {"course_id": 10**12}):
        with pytest.raises(ops.AdminError):
            ops.create_api_key(session, student.id, **bad)
    until = (datetime.now(UTC) + timedelta(days=100)).date()
    _c, admin_key = ops.create_api_key(session, admin.id, scopes=["admin", "inference"], expires=until.isoformat())
    assert admin_key.expires_at == datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    session.commit()
    assert [k.id for k in ops.list_api_keys(session, owner_id=student.id)] == [row.id]
    assert ops.list_api_keys(session, prefix="%") == [] and ops.list_api_keys(session, prefix="' OR 1=1--") == []
    assert [k.id for k in ops.list_api_keys(session, prefix=row.prefix)] == [row.id]
    assert ops.find_api_key(session, created.key).id == row.id  # a pasted full key finds its row
    with pytest.raises(ops.AdminError) as err:  # someone else's key is "not found"
        ops.revoke_api_key(session, row.id, owner_id=admin.id)
    assert err.value.status == 404 and created.key not in err.value.message
    ops.revoke_api_key(session, row.id, owner_id=student.id)
    session.commit()
    assert verify_key(session, created.key) is None
    assert [k.id for k in ops.list_api_keys(session, state="revoked")] == [row.id]
    assert [k.id for k in ops.list_api_keys(session, state="active")] == [admin_key.id]
    assert ops.active_key_count(session, student.id) == 0


def test_parse_expiry() -> None:
    now = datetime(2030, 5, 1, 12, tzinfo=UTC)
    assert ops.parse_expiry(7, now) == now + timedelta(days=7)
    assert ops.parse_expiry("7", now) == now + timedelta(days=7)
    assert ops.parse_expiry("2030-05-01", now) == datetime(2030, 5, 2, tzinfo=UTC)
    assert ops.parse_expiry("2030-06-01T10:00:00+02:00", now) == datetime(2030, 6, 1, 8, tzinfo=UTC)
    for bad in ("2030-04-30", "-1", "99999999", "2030-13-01", True, "x"):
        with pytest.raises(ops.AdminError):
            ops.parse_expiry(bad, now)


def test_quotas(session: Session, admin: User) -> None:
    user = ops.create_user(session, KEY, "gina")
    session.commit()
    role = ops.set_quota(session, "role", "student", {"tokens_per_day": 50000})
    assert role["tokens_per_day"] == 50000 and role["requests_per_minute"] is None
    ops.set_quota(session, "user", user.id, {"requests_per_minute": 10})
    ops.set_quota(session, "user", str(user.id), {"tokens_per_week": 7, "requests_per_minute": None})
    session.commit()
    listed = ops.list_quotas(session)
    assert [(q["kind"], q["label"]) for q in listed] == [("role", "student"), ("user", "gina")]
    assert listed[1]["requests_per_minute"] is None and listed[1]["tokens_per_week"] == 7
    usage = ops.quota_usage(session, "user", user.id)
    assert usage["limits_from"] == "own" and usage["used"] == {n: 0 for n in ops.QUOTA_FIELDS}
    ops.clear_quota(session, "user", user.id)
    assert ops.quota_usage(session, "user", user.id)["limits_from"] == "role student"
    for kind, subject, values, status in [
        ("user", 99999, {"tokens_per_day": 1}, 404), ("role", "god", {"tokens_per_day": 1}, 400),
        ("planet", 1, {"tokens_per_day": 1}, 400), ("user", user.id, {"tokens_per_day": -1}, 400),
        ("user", user.id, {"tokens_per_day": 2**40}, 400), ("user", user.id, {"bogus": 1}, 400),
        ("user", user.id, {}, 400), ("user", "' OR 1=1--", {"tokens_per_day": 1}, 404),
    ]:
        with pytest.raises(ops.AdminError) as err:
            ops.set_quota(session, kind, subject, values)
        assert err.value.status == status, (kind, subject, values)
    with pytest.raises(ops.AdminError) as err:
        ops.clear_quota(session, "user", user.id)
    assert err.value.status == 404


def test_policies(session: Session, admin: User) -> None:
    row = ops.create_policy(session, "llama3*", allowed_roles=["teacher"], max_output=512)
    session.commit()
    assert ops.policy_view(row) == {"id": row.id, "pattern": "llama3*", "allowed_roles": ["teacher"],
                                    "allowed_groups": None, "max_context": None, "max_output": 512}
    with pytest.raises(ops.AdminError) as err:
        ops.create_policy(session, "llama3*")
    assert err.value.status == 409
    session.rollback()
    ops.update_policy(session, row.id, {"allowed_groups": ["staff"], "max_output": None})
    assert row.allowed_groups == ["staff"] and row.max_output is None
    again, created = ops.set_policy(session, "llama3*", {"max_context": 2048})
    assert again.id == row.id and not created and again.max_context == 2048
    other, created = ops.set_policy(session, "smollm2:*", {"allowed_roles": []})
    assert created and other.allowed_roles == []
    session.commit()
    assert [p.pattern for p in ops.list_policies(session, search="lla")] == ["llama3*"]
    for value in HOSTILE:
        ops.list_policies(session, search=value)
    for bad in ({"allowed_roles": ["god"]}, {"max_context": 0}, {"pattern": "a b"}, {"allowed_groups": "staff"}):
        with pytest.raises(ops.AdminError):
            ops.update_policy(session, row.id, bad)
    assert ops.find_policy(session, "smollm2:*").id == other.id
    ops.delete_policy(session, row.id)
    session.commit()
    with pytest.raises(ops.AdminError) as err:
        ops.get_policy(session, row.id)
    assert err.value.status == 404


def test_end_user_quotas_only_on_a_service_accounts_key(session: Session, admin: User) -> None:
    """Kind `enduser`: the limits each end user (OpenAI `user`) of a key gets; only a service account's key may
    split, so a person's key is refused (German and English), and deleting the owner takes the limits along."""
    site = ops.create_user(session, KEY, "moodle", role="service")
    person = ops.create_user(session, KEY, "stu", role="student")
    _, site_key = ops.create_api_key(session, site.id)
    _, person_key = ops.create_api_key(session, person.id)
    session.commit()
    view = ops.set_quota(session, "enduser", site_key.id, {"tokens_per_day": 2000, "requests_per_minute": 5})
    assert (view["kind"], view["subject"], view["label"]) == ("enduser", site_key.id, site_key.prefix)
    assert ("enduser", site_key.prefix) in {(q["kind"], q["label"]) for q in ops.list_quotas(session, "enduser")}
    with pytest.raises(ops.AdminError) as err:
        ops.set_quota(session, "enduser", person_key.id, {"tokens_per_day": 1})
    assert err.value.status == 400 and "service" in err.value.message
    assert "Dienstkontos" in err.value.localized("de")
    with pytest.raises(ops.AdminError) as err:
        ops.set_quota(session, "enduser", 99999, {"tokens_per_day": 1})
    assert err.value.status == 404
    with pytest.raises(ops.AdminError):
        ops.quota_usage(session, "enduser", site_key.id)  # counted one by one: see the usage by end user
    session.commit()
    ops.delete_user(session, site.id)
    session.commit()
    assert session.scalar(select(func.count()).select_from(Quota).where(Quota.subject_kind == "enduser")) == 0
