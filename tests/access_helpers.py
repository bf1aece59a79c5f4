"""Set up people, keys, quotas and policies directly in a test server's database.

End-to-end tests use these instead of the admin API so that access tests do not
depend on it (the admin API has its own tests)."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from flexi.db.apikeys import create_key
from flexi.db.engine import make_engine, session_factory
from flexi.db.models import (
    Course,
    CourseMember,
    LoginSession,
    ModelPolicy,
    Quota,
    QuotaCounter,
    RoleQuota,
    TermsAcceptance,
    UsageRecord,
    User,
    utcnow,
)
from flexi.db.pseudonym import load_key, pseudonymize


def fresh_minute(needed_seconds: float = 25.0) -> None:
    """Wait, if need be, until the current UTC minute has `needed_seconds` left.

    Requests-per-minute limits count per calendar minute (see flexi.access.quota), so a
    test that expects its N+1-th request to be refused must not straddle a minute change."""
    left = 60.0 - time.time() % 60.0
    if left < needed_seconds:
        time.sleep(left + 0.05)


class ServerDB:
    """The database of a running test server: its SQLite file (FLEXI_HOME/flexi.db) or `url`."""

    def __init__(self, home: Path, url: str | None = None) -> None:
        self.home = home
        self.engine: Engine = make_engine(url, home)
        self.key = load_key(home)

    def session(self) -> Session:
        return session_factory(self.engine)()  # write sessions: BEGIN IMMEDIATE on SQLite

    def add_user(self, subject: str, role: str = "student", **fields: Any) -> int:
        with self.session() as s:
            user = User(subject=subject, pseudonym=pseudonymize(subject, self.key), role=role, **fields)
            s.add(user)
            s.commit()
            return user.id

    def add_key(self, user_id: int, **kwargs: Any) -> tuple[int, str]:
        course_id = kwargs.pop("course_id", None)
        with self.session() as s:
            created = create_key(s, user_id, **kwargs)
            if course_id is not None:
                from flexi.db.models import ApiKey

                s.get(ApiKey, created.info.id).course_id = course_id  # type: ignore[union-attr]
            s.commit()
            return created.info.id, created.key

    def add_session(self, user_id: int) -> str:
        token = secrets.token_urlsafe(32)
        with self.session() as s:
            s.add(LoginSession(token_hash=hashlib.sha256(token.encode()).hexdigest(), user_id=user_id,
                               expires_at=utcnow() + timedelta(hours=1), method="password"))
            s.commit()
        return token

    def accept_terms(self, user_id: int, version: str) -> None:
        with self.session() as s:
            s.add(TermsAcceptance(user_id=user_id, version=version))
            s.commit()

    def add_course(self, name: str, members: dict[int, str]) -> int:
        with self.session() as s:
            course = Course(name=name)
            s.add(course)
            s.flush()
            for uid, role in members.items():
                s.add(CourseMember(course_id=course.id, user_id=uid, role=role))
            s.commit()
            return course.id

    def remove_course_member(self, course_id: int, user_id: int) -> None:
        with self.session() as s:
            s.execute(delete(CourseMember).where(CourseMember.course_id == course_id, CourseMember.user_id == user_id))
            s.commit()

    def set_quota(self, kind: str, subject_id: int, **limits: int | None) -> None:
        with self.session() as s:
            s.execute(delete(Quota).where(Quota.subject_kind == kind, Quota.subject_id == subject_id))
            s.add(Quota(subject_kind=kind, subject_id=subject_id, **limits))
            s.commit()

    def set_role_quota(self, role: str, **limits: int | None) -> None:
        with self.session() as s:
            s.merge(RoleQuota(role=role, **limits))
            s.commit()

    def add_policy(self, pattern: str, **fields: Any) -> None:
        with self.session() as s:
            s.add(ModelPolicy(pattern=pattern, **fields))
            s.commit()

    def clear_policies(self) -> None:
        with self.session() as s:
            s.execute(delete(ModelPolicy))
            s.commit()

    def update_user(self, user_id: int, **fields: Any) -> None:
        with self.session() as s:
            user = s.get(User, user_id)
            assert user is not None
            for k, v in fields.items():
                setattr(user, k, v)
            s.commit()

    def revoke_key(self, key_id: int) -> None:
        from flexi.db.apikeys import revoke_key

        with self.session() as s:
            revoke_key(s, key_id)
            s.commit()

    def usage(self, pseudonym: str) -> list[UsageRecord]:
        with self.session() as s:
            return list(s.scalars(select(UsageRecord).where(UsageRecord.user_pseudonym == pseudonym)
                                  .order_by(UsageRecord.id)))

    def wait_usage(self, subject: str, n: int, timeout: float = 15) -> list[UsageRecord]:
        """The usage records of `subject`'s ended requests once there are at least `n` (the server writes them
        in batches, off the request path; a generation's row is "running" until its end is written)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = [r for r in self.usage(self.pseudonym(subject)) if r.status != "running"]
            if len(records) >= n:
                return records
            time.sleep(0.1)
        raise AssertionError(f"expected {n} usage records for {subject}, found {len(self.usage(self.pseudonym(subject)))}")

    def counters(self, kind: str, subject_id: int) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(QuotaCounter.window, func.sum(QuotaCounter.used))
                             .where(QuotaCounter.subject_kind == kind, QuotaCounter.subject_id == subject_id)
                             .group_by(QuotaCounter.window)).all()
            return {w: int(n) for w, n in rows}

    def pseudonym(self, subject: str) -> str:
        return pseudonymize(subject, self.key)

    def close(self) -> None:
        self.engine.dispose()

    def count(self, table: str) -> int:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # table names are ours
