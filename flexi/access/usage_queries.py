"""Usage totals for admins (per user, course, model, key, prompt template or day) and for each user
about themselves. Portable SQL (SQLite and PostgreSQL), bound parameters only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Date, Integer, case, cast, func, select
from sqlalchemy.orm import Session

from flexi.access.principal import Principal
from flexi.access.quota import QuotaLedger, for_end_user, window_end, window_start
from flexi.access.usage_journal import INTERRUPTED, RUNNING
from flexi.db.models import ApiKey, Course, PromptTemplate, UsageRecord, utcnow, iso_z

GROUPS = ("user", "course", "model", "key", "day", "end_user", "template")  # end_user: a service key's end users (pseudonyms)


def _day(session: Session) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return func.date(UsageRecord.at)  # stored as UTC text; date() keeps 'YYYY-MM-DD'
    return cast(func.timezone("UTC", UsageRecord.at), Date)


def _totals() -> list[Any]:
    """Every row is one request (a journaled generation keeps one row from start to end). The summaries
    count requests once they ended, as before the journal ("running" rows are left out by `usage_summary`);
    an "interrupted" one (its replica died mid-request) counts as a request and an error, with its tokens
    (0) and without times (unknown), so the means leave it out."""
    timed = UsageRecord.status != INTERRUPTED
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(UsageRecord.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(UsageRecord.completion_tokens), 0).label("completion_tokens"),
        func.sum(case((UsageRecord.status == "ok", 1), else_=0)).label("ok"),
        func.sum(case((UsageRecord.status == "rejected", 1), else_=0)).label("rejected"),
        func.sum(case((UsageRecord.status == "cancelled", 1), else_=0)).label("cancelled"),
        func.sum(case((UsageRecord.status.in_(("error", INTERRUPTED)), 1), else_=0)).label("errors"),
        cast(func.avg(case((timed, UsageRecord.queue_ms))), Integer).label("mean_queue_ms"),
        cast(func.avg(case((timed, UsageRecord.generation_ms))), Integer).label("mean_generation_ms"),
    ]


def usage_summary(session: Session, by: str, *, since: datetime | None = None, until: datetime | None = None,
                  model: str | None = None, course: str | None = None, pseudonym: str | None = None,
                  key_id: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Totals grouped `by` one of GROUPS, newest/largest first (`key_id`: one key's requests only, e.g.
    a Moodle site's key grouped by its end users: who they are stays unknown, only their pseudonyms)."""
    if by not in GROUPS:
        raise ValueError(f"group by one of {', '.join(GROUPS)}")
    if by == "user":
        key: Any = UsageRecord.user_pseudonym
    elif by == "course":
        key = Course.name
    elif by == "model":
        key = UsageRecord.model
    elif by == "key":
        key = ApiKey.prefix
    elif by == "end_user":
        key = UsageRecord.end_user
    elif by == "template":  # runs of prompt templates only (issue 15), by the template's slug
        key = PromptTemplate.slug
    else:
        key = _day(session)
    stmt = select(key.label("group"), *_totals()).select_from(UsageRecord).where(UsageRecord.status != RUNNING)
    if by == "course" or course is not None:
        stmt = stmt.outerjoin(Course, Course.id == UsageRecord.course_id)
    if by == "key":
        stmt = stmt.outerjoin(ApiKey, ApiKey.id == UsageRecord.key_id)
    if by == "template":  # a deleted template's runs stay, under no name
        stmt = stmt.outerjoin(PromptTemplate, PromptTemplate.id == UsageRecord.template_id) \
            .where(UsageRecord.template_version.is_not(None))
    if since is not None:
        stmt = stmt.where(UsageRecord.at >= since)
    if until is not None:
        stmt = stmt.where(UsageRecord.at < until)
    if model:
        stmt = stmt.where(UsageRecord.model == model)
    if course:
        stmt = stmt.where(Course.name == course)
    if pseudonym:
        stmt = stmt.where(UsageRecord.user_pseudonym == pseudonym)
    if key_id is not None:
        stmt = stmt.where(UsageRecord.key_id == key_id)
    order = key.desc() if by == "day" else func.count().desc()
    stmt = stmt.group_by(key).order_by(order).limit(max(1, min(limit, 10000)))
    out = []
    for row in session.execute(stmt).mappings():
        item = dict(row)
        group = item.pop("group")
        item[by] = str(group) if group is not None else None
        out.append({by: item.pop(by), **{k: int(v or 0) for k, v in item.items()}})
    return out


def own_usage(session: Session, principal: Principal, quotas: QuotaLedger, days: int = 30) -> dict[str, Any]:
    """What a user sees about themselves: recent usage per day and model, and every limit that
    applies to this request's credentials (their own or their role's, the key's, the key's course)
    with what is used and when the window resets."""
    now = utcnow()
    since = now - timedelta(days=days)
    quota = []
    if principal.user_id is not None:
        conn = session.connection()
        course = principal.key_course_id  # a course key bills its course while the owner is a member
        if course is not None and course not in principal.courses and not principal.is_admin:
            course = None
        used: dict[tuple[str, int], dict[str, int]] = {}
        for lim in for_end_user(quotas.limits_for(conn, principal, course), None):  # a key's share per end user: not
            # the caller's own (an application's users see theirs only in the 429 that names it)
            subject = (lim.subject_kind, lim.subject_id)
            if subject not in used:
                used[subject] = quotas.usage_of(conn, lim.subject_kind, lim.subject_id, now)
            spent = used[subject].get(lim.name, 0)
            quota.append({"limit": lim.name, "applies_to": lim.subject_kind, "value": lim.value, "used": spent,
                          "remaining": max(0, lim.value - spent),
                          "resets_at": iso_z(window_end(lim.window, window_start(lim.window, now)))})
    return {
        "since": iso_z(since),
        "per_day": usage_summary(session, "day", since=since, pseudonym=principal.pseudonym),
        "per_model": usage_summary(session, "model", since=since, pseudonym=principal.pseudonym),
        "quotas": quota,
    }
