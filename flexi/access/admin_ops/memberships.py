"""Groups and courses: named sets of users, written once and parameterised by a `Membership` spec.

Why one code path: a group (which policies can name) and a course (members with a course role, course
keys and a course quota) are the same thing to administer — create, list, show, delete, add and remove
members — and differ only in their tables, the course role of a member and what a course takes with it
when deleted (its quota). The REST layer (`flexi.campus.admin`) and the CLI (`flexi.cli.admin`) build
their routes and commands from the same specs, `GROUPS` and `COURSES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from flexi.access.admin_ops.checks import (
    add_row,
    choice,
    clean_text,
    filter_text,
    get_row,
    not_found,
    paging,
    valid_id,
)
from flexi.access.admin_ops.errors import AdminError
from flexi.access.admin_ops.users import get_user, user_view
from flexi.db.models import COURSE_ROLES, Course, CourseMember, Group, GroupMember, Quota, QuotaCounter, User

Named = Group | Course


@dataclass(frozen=True)
class Membership:
    """What differs between groups and courses.

    `kind`: "group" or "course", the word in messages and the stem of wire names (`/admin/{plural}`,
    `{kind}_id`, `{kind}_role`); `member_roles`: the roles a member can have in it (None: membership
    only); `quota_kind`: the quota subject kind whose rows go with a deleted entity (None: no quota).
    """

    kind: str
    plural: str
    table: type[Named]
    member_table: type[GroupMember] | type[CourseMember]
    member_roles: tuple[str, ...] | None = None
    default_role: str | None = None
    quota_kind: str | None = None

    @property
    def id_field(self) -> str:
        """The entity's id column in the member table, also the id's name on the wire."""
        return f"{self.kind}_id"

    @property
    def role_field(self) -> str:
        return f"{self.kind}_role"

    def member_entity(self) -> Any:
        """The member table's column naming the entity (`group_id`, `course_id`)."""
        return getattr(self.member_table, self.id_field)

    def select_with_role(self, *columns: Any) -> Select[Any]:
        """SELECT `columns`, and the member's course role if this kind has roles."""
        return select(*columns, self.member_table.role) if self.member_roles else select(*columns)  # type: ignore[union-attr]

    def role_of(self, found: Sequence[Any]) -> str | None:
        """The course role from a row of `select_with_role`, None for groups."""
        return found[-1] if self.member_roles else None


GROUPS = Membership("group", "groups", Group, GroupMember)
COURSES = Membership("course", "courses", Course, CourseMember, member_roles=COURSE_ROLES, default_role="student",
                     quota_kind="course")
KINDS = {spec.kind: spec for spec in (GROUPS, COURSES)}


def view(row: Named, members: int | None = None) -> dict[str, Any]:
    """A group or course as JSON: id, name, title and (in lists) the member count."""
    out: dict[str, Any] = {"id": row.id, "name": row.name, "title": row.title}
    if members is not None:
        out["members"] = members
    return out


def member_view(spec: Membership, user: User, role: str | None) -> dict[str, Any]:
    """A member: the user's view, with the course role for courses."""
    return {**user_view(user), spec.role_field: role} if spec.member_roles else user_view(user)


def create(spec: Membership, session: Session, name: str, title: str | None = None) -> Named:
    row = spec.table(name=clean_text(name, "name", 100), title=clean_text(title, "title", 255, required=False))
    conflict = f"a {spec.kind} named {row.name!r} exists already"
    if session.scalar(select(spec.table.id).where(spec.table.name == row.name)) is not None:
        raise AdminError(conflict, 409)
    add_row(session, row, conflict)
    return row


def list_all(spec: Membership, session: Session, *, search: str | None = None, limit: int = 100,
             offset: int = 0) -> list[tuple[Named, int]]:
    """By name with member counts; `search`: case-insensitive substring of name or title."""
    limit, offset = paging(limit, offset)
    table = spec.table
    count = select(func.count()).where(spec.member_entity() == table.id).correlate(table).scalar_subquery()
    query = select(table, count).order_by(table.name).limit(limit).offset(offset)
    if (needle := filter_text(search, "search")) is not None:
        needle = needle.lower()
        query = query.where(func.lower(table.name).contains(needle, autoescape=True)
                            | func.lower(func.coalesce(table.title, "")).contains(needle, autoescape=True))
    return [(row, int(n)) for row, n in session.execute(query)]


def get(spec: Membership, session: Session, ident: object) -> Named:
    return get_row(session, spec.table, ident, spec.kind)


def find(spec: Membership, session: Session, ref: str) -> Named:
    """By name, else by numeric id (the CLI's GROUP or COURSE argument)."""
    text = clean_text(ref, spec.kind, 100)
    row = session.scalar(select(spec.table).where(spec.table.name == text))
    if row is None and (ident := valid_id(text)) is not None:
        row = session.get(spec.table, ident)
    if row is None:
        raise not_found(spec.kind, text)
    return row


def remove(spec: Membership, session: Session, ident: object) -> Named:
    """Delete a group or course (members stay users; a course's keys stay, billed to no course, and
    its quota goes)."""
    row = get(spec, session, ident)
    if spec.quota_kind is not None:
        session.execute(delete(Quota).where(Quota.subject_kind == spec.quota_kind, Quota.subject_id == row.id))
        session.execute(delete(QuotaCounter).where(QuotaCounter.subject_kind == spec.quota_kind,
                                                   QuotaCounter.subject_id == row.id))
    session.delete(row)
    session.flush()
    return row


def members(spec: Membership, session: Session, ident: object) -> list[tuple[User, str | None]]:
    """(user, course role or None) by subject."""
    row = get(spec, session, ident)
    query = spec.select_with_role(User).join(spec.member_table, spec.member_table.user_id == User.id).where(
        spec.member_entity() == row.id).order_by(User.subject)
    return [(found[0], spec.role_of(found)) for found in session.execute(query)]


def put_member(spec: Membership, session: Session, ident: object, user_id: object, role: str | None = None) -> bool:
    """Add a member (with a course role), or change the course role of one; True if newly added."""
    row, user = get(spec, session, ident), get_user(session, user_id)
    fields: dict[str, Any] = {}
    if spec.member_roles:
        fields["role"] = choice(role if role is not None else spec.default_role, spec.member_roles,
                                f"{spec.kind} role")
    existing = session.get(spec.member_table, (row.id, user.id))
    if existing is not None:
        for name, value in fields.items():
            setattr(existing, name, value)
        session.flush()
        return False
    add_row(session, spec.member_table(**{spec.id_field: row.id, "user_id": user.id}, **fields), "already a member")
    return True


def remove_member(spec: Membership, session: Session, ident: object, user_id: object) -> None:
    row, user = get(spec, session, ident), get_user(session, user_id)
    member = session.get(spec.member_table, (row.id, user.id))
    if member is None:
        raise AdminError(f"{user.subject} is not a member of {spec.kind} {row.name}", 404)
    session.delete(member)
    session.flush()


def memberships_of(spec: Membership, session: Session, user_id: int) -> list[tuple[str, str | None]]:
    """(name, course role or None) of the groups or courses a user belongs to, by name."""
    query = spec.select_with_role(spec.table.name).join(spec.member_table, spec.member_entity() == spec.table.id) \
        .where(spec.member_table.user_id == user_id).order_by(spec.table.name)
    return [(found[0], spec.role_of(found)) for found in session.execute(query)]


# --- the per-entity names (tests, self-service keys, quotas), bound to the one implementation ---------
group_view = course_view = view
create_group, create_course = partial(create, GROUPS), partial(create, COURSES)
list_groups, list_courses = partial(list_all, GROUPS), partial(list_all, COURSES)
get_group, get_course = partial(get, GROUPS), partial(get, COURSES)
find_group, find_course = partial(find, GROUPS), partial(find, COURSES)
delete_group, delete_course = partial(remove, GROUPS), partial(remove, COURSES)
add_group_member, set_course_member = partial(put_member, GROUPS), partial(put_member, COURSES)
remove_group_member, remove_course_member = partial(remove_member, GROUPS), partial(remove_member, COURSES)
course_members = partial(members, COURSES)


def group_members(session: Session, group_id: object) -> list[User]:
    """A group's members (a group has no member roles)."""
    return [user for user, _ in members(GROUPS, session, group_id)]
