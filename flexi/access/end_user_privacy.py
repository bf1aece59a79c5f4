"""GDPR requests of one end user of a site account (a Moodle student behind the site's key).

Flexi never stores the value an application sends as `user` (Moodle: SHA-256 of its site identifier and
the Moodle user id), only a keyed hash of it scoped to the site account (`end_user_pseudonym`). So a
student's records can be found only when someone brings that value again: the site's administrator
computes it for the student who asks and hands it to Flexi's admin, who exports (Art. 15) or erases
(Art. 17) exactly that student's records with it. Erasing unlinks: the usage numbers stay for the site's
totals, the pseudonym goes, and the student's quota counters are deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from flexi.db.models import QuotaCounter, UsageRecord, iso_z
from flexi.db.pseudonym import pseudonymize

MAX_END_USER_CHARS = 256  # as the request models accept (flexi/api/end_user.py)


def end_user_pseudonym(owner_id: int | None, end_user: str, key: bytes) -> str:
    """The one formula for an end user's pseudonym: bound to the site account (rotating its key keeps
    it), so the same value sent by two sites never links."""
    return pseudonymize(f"end-user:{owner_id}:{end_user}", key)


def export_end_user(session: Session, pseudonym: str) -> dict[str, Any]:
    """Every usage record of one end user (there is nothing else stored about them)."""
    rows = session.scalars(select(UsageRecord).where(UsageRecord.end_user == pseudonym).order_by(UsageRecord.at)).all()
    return {"end_user": pseudonym, "usage": [
        {"at": iso_z(u.at), "model": u.model, "endpoint": u.endpoint, "prompt_tokens": u.prompt_tokens,
         "completion_tokens": u.completion_tokens, "status": u.status, "course_id": u.course_id,
         "template_id": u.template_id, "template_version": u.template_version} for u in rows]}


def erase_end_user(session: Session, pseudonym: str) -> dict[str, int]:
    """Unlink one end user's usage records and delete their quota counters."""
    return {
        "usage_records_unlinked": session.execute(
            update(UsageRecord).where(UsageRecord.end_user == pseudonym).values(end_user=None)).rowcount,
        "quota_counters": session.execute(
            delete(QuotaCounter).where(QuotaCounter.subject_kind == "enduser", QuotaCounter.end_user == pseudonym)
        ).rowcount,
    }
