"""Data protection operations: export, erasure and retention (GDPR Art. 15, 17, 5(1)(e)).

- `export_user`: everything Flexi holds about one person, as JSON (right of access).
- `erase_user`: deletes the person and all personal data; their usage rows stay
  for the totals but get a fresh random pseudonym that nothing links to anyone
  (the keyed pseudonym could otherwise be recomputed from the subject).
- `purge_expired`: applies the retention periods; the server runs it hourly
  (including server-side chat history, FLEXI_CHAT_RETENTION_DAYS).
Functions take a Session (the caller commits) except `purge_expired`, which
runs its own short transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import datetime, timedelta
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from flexi.config import BackendConfig, Settings
from flexi.db.engine import write_transaction
from flexi.db.models import (
    iso_z,
    ApiKey,
    Assistant,
    PromptTemplate,
    PromptTemplateVersion,
    ChatMessage,
    ContentRecord,
    Conversation,
    Course,
    CourseMember,
    Group,
    GroupMember,
    LoginSession,
    Quota,
    QuotaCounter,
    TermsAcceptance,
    UsageRecord,
    User,
    utcnow,
)

log = logging.getLogger("flexi.privacy")
PURGE_INTERVAL = 3600.0
COUNTER_KEEP = timedelta(days=8)  # a week window plus a day: nothing still counting is removed
ERASED_PREFIX = "erased-"


def _iso(value: datetime | None) -> str | None:
    return iso_z(value) if value else None


def processing_info(settings: Settings, stored: Sequence[BackendConfig] = ()) -> dict[str, Any]:
    """What Art. 15(1) GDPR asks to tell beside the data: purposes, retention, recipients, source,
    taken from the running configuration (the same source as the Art. 30 record); `stored`: the
    backends admins added at run time."""
    from flexi.access.report import backends, external_backends

    external = external_backends(settings, stored)

    return {
        "purposes": ["access control, quotas and usage accounting for the institution's language models"]
        + ([f"content logging: {settings.content_log_purpose}"] if settings.content_log_purpose else []),
        "retention_days": {"usage_records": settings.usage_retention_days,
                           "content_records": settings.content_log_retention_days if settings.content_log_purpose else 0,
                           "conversations": settings.chat_retention_days if settings.chat_history == "server" else 0,
                           "sign_in_sessions_hours": settings.session_hours},
        "content_logging": settings.content_log_purpose or None,
        "chat_history": settings.chat_history,
        "recipients": "none outside the institution" if not external else
                      "prompts sent to the models of these external backends leave the institution: "
                      + "; ".join(f"{e['name']} ({e['host']})" for e in external),
        "external_backends": external,
        "processing_locations": [{"name": b.name, "local": b.local, "location": b.location}
                                 for b in backends(settings, stored)],
        "source": "your sign-in (single sign-on or local account) and your requests",
        "rights": "erase: DELETE /me?confirm=true; complaints: the institution's data protection officer "
                  "or the supervisory authority",
        "terms_version": settings.terms_version or None,
    }


def export_user(session: Session, user_id: int, settings: Settings | None = None) -> dict[str, Any] | None:
    """All data about user `user_id` (None if there is no such user); with `settings`, also
    the purposes, retention periods and recipients that apply (`processing`)."""
    user = session.get(User, user_id)
    if user is None:
        return None
    groups = session.scalars(select(Group.name).join(GroupMember, GroupMember.group_id == Group.id)
                             .where(GroupMember.user_id == user_id).order_by(Group.name)).all()
    courses = session.execute(select(Course.name, Course.title, CourseMember.role)
                              .join(CourseMember, CourseMember.course_id == Course.id)
                              .where(CourseMember.user_id == user_id).order_by(Course.name)).all()
    keys = session.scalars(select(ApiKey).where(ApiKey.owner_id == user_id).order_by(ApiKey.id)).all()
    terms = session.scalars(select(TermsAcceptance).where(TermsAcceptance.user_id == user_id)
                            .order_by(TermsAcceptance.accepted_at)).all()
    logins = session.scalars(select(LoginSession).where(LoginSession.user_id == user_id)
                             .order_by(LoginSession.created_at)).all()
    usage = session.scalars(select(UsageRecord).where(UsageRecord.user_pseudonym == user.pseudonym)
                            .order_by(UsageRecord.at)).all()
    content = session.scalars(select(ContentRecord).where(ContentRecord.user_pseudonym == user.pseudonym)
                              .order_by(ContentRecord.at)).all()
    conversations = session.scalars(select(Conversation).where(Conversation.user_id == user_id)
                                    .order_by(Conversation.created_at, Conversation.id)).all()
    messages: dict[int, list[ChatMessage]] = {c.id: [] for c in conversations}
    if conversations:
        for m in session.scalars(select(ChatMessage).where(ChatMessage.conversation_id.in_(list(messages)))
                                 .order_by(ChatMessage.conversation_id, ChatMessage.position)):
            messages[m.conversation_id].append(m)
    assistants = session.scalars(select(Assistant).where(Assistant.owner_id == user_id).order_by(Assistant.id)).all()
    templates = session.scalars(select(PromptTemplate).where(PromptTemplate.owner_id == user_id)
                                .order_by(PromptTemplate.id)).all()
    versions = session.scalars(select(PromptTemplateVersion).where(PromptTemplateVersion.created_by == user_id)
                               .order_by(PromptTemplateVersion.template_id, PromptTemplateVersion.version)).all()
    data: dict[str, Any] = {
        "exported_at": _iso(utcnow()),
        "profile": {"id": user.id, "subject": user.subject, "pseudonym": user.pseudonym,
                    "display_name": user.display_name, "email": user.email, "role": user.role,
                    "locale": user.locale, "created_at": _iso(user.created_at), "disabled_at": _iso(user.disabled_at),
                    "has_local_password": user.password_hash is not None},
        "groups": list(groups),
        "courses": [{"name": n, "title": t, "role": r} for n, t, r in courses],
        "api_keys": [{"id": k.id, "prefix": k.prefix, "name": k.name, "created_at": _iso(k.created_at),
                      "expires_at": _iso(k.expires_at), "revoked_at": _iso(k.revoked_at),
                      "last_used_at": _iso(k.last_used_at), "scopes": list(k.scopes),
                      "models": None if k.models is None else list(k.models), "course_id": k.course_id} for k in keys],
        "terms_acceptances": [{"version": t.version, "accepted_at": _iso(t.accepted_at)} for t in terms],
        "login_sessions": [{"created_at": _iso(s.created_at), "expires_at": _iso(s.expires_at), "method": s.method}
                           for s in logins],
        "usage_records": [{"at": _iso(u.at), "key_id": u.key_id, "course_id": u.course_id, "model": u.model,
                           "endpoint": u.endpoint, "prompt_tokens": u.prompt_tokens,
                           "completion_tokens": u.completion_tokens, "queue_ms": u.queue_ms,
                           "generation_ms": u.generation_ms, "status": u.status, "assistant_id": u.assistant_id,
                           "end_user": u.end_user,
                           "template_id": u.template_id, "template_version": u.template_version}
                          for u in usage],
        "content_records": [{"at": _iso(c.at), "purpose": c.purpose, "model": c.model, "endpoint": c.endpoint,
                             "prompt": c.prompt, "response": c.response} for c in content],
        "conversations": [{"id": c.id, "title": c.title, "model": c.model, "assistant_id": c.assistant_id,
                           "created_at": _iso(c.created_at), "updated_at": _iso(c.updated_at),
                           "messages": [{"role": m.role, "content": m.content, "created_at": _iso(m.created_at)}
                                        for m in messages[c.id]]} for c in conversations],
        "assistants_owned": [{"id": a.id, "slug": a.slug, "course_id": a.course_id, "name": a.name,
                              "description": a.description, "model": a.model, "system_prompt": a.system_prompt,
                              "welcome_message": a.welcome_message, "example_questions": list(a.example_questions),
                              "options": dict(a.options), "audience": a.audience,
                              "show_system_prompt": a.show_system_prompt, "disabled": a.disabled,
                              "created_at": _iso(a.created_at), "updated_at": _iso(a.updated_at)} for a in assistants],
        "templates_owned": [{"id": pt.id, "slug": pt.slug, "course_id": pt.course_id, "version": pt.version,
                             "disabled": pt.disabled, "created_at": _iso(pt.created_at),
                             "updated_at": _iso(pt.updated_at)} for pt in templates],
        "template_versions_written": [{"template_id": v.template_id, "version": v.version, "name": v.name,
                                       "description": v.description, "instructions": v.instructions,
                                       "parameters": list(v.parameters), "model": v.model, "options": dict(v.options),
                                       "created_at": _iso(v.created_at)} for v in versions],
    }
    if settings is not None:
        from flexi.access.admin_ops.backends import stored_backends

        data["processing"] = processing_info(settings, stored_backends(session))
    return data


def erase_user(session: Session, user_id: int) -> dict[str, int] | None:
    """Delete user `user_id` and their personal data; keep their usage numbers unlinkably.
    Their server-side conversations go; course assistants they made stay with the course
    (owner set to NULL). Returns what was removed (None if there is no such user)."""
    user = session.get(User, user_id)
    if user is None:
        return None
    pseudonym = user.pseudonym
    key_ids = list(session.scalars(select(ApiKey.id).where(ApiKey.owner_id == user_id)))
    for kind, ids in (("user", [user_id]), ("key", key_ids), ("enduser", key_ids)):
        if ids:  # a later user or key with a reused id must not inherit limits or use
            session.execute(delete(Quota).where(Quota.subject_kind == kind, Quota.subject_id.in_(ids)))
            session.execute(delete(QuotaCounter).where(QuotaCounter.subject_kind == kind, QuotaCounter.subject_id.in_(ids)))
    counts = {
        "content_records": session.execute(delete(ContentRecord).where(ContentRecord.user_pseudonym == pseudonym)).rowcount,
        # a service account's rows also lose its end users' pseudonyms (computable again from its id)
        "usage_records_unlinked": session.execute(
            update(UsageRecord).where(UsageRecord.user_pseudonym == pseudonym)
            .values(user_pseudonym=ERASED_PREFIX + secrets.token_hex(28), end_user=None)).rowcount,
        "api_keys": session.execute(delete(ApiKey).where(ApiKey.owner_id == user_id)).rowcount,
        "login_sessions": session.execute(delete(LoginSession).where(LoginSession.user_id == user_id)).rowcount,
        "conversations": _delete_conversations(session, Conversation.user_id == user_id),
        "assistants_unowned": session.execute(
            update(Assistant).where(Assistant.owner_id == user_id).values(owner_id=None)).rowcount,
    }
    session.execute(delete(TermsAcceptance).where(TermsAcceptance.user_id == user_id))
    session.execute(delete(GroupMember).where(GroupMember.user_id == user_id))
    session.execute(delete(CourseMember).where(CourseMember.user_id == user_id))
    session.delete(user)
    session.flush()
    return counts


def _delete_conversations(conn: Session | Any, where: Any) -> int:
    """Delete the conversations matching `where` and their messages (explicitly, not only by the
    foreign keys' cascade, so nothing is left behind on a database with foreign keys off)."""
    ids = select(Conversation.id).where(where).scalar_subquery()
    conn.execute(delete(ChatMessage).where(ChatMessage.conversation_id.in_(ids)))
    return int(conn.execute(delete(Conversation).where(where)).rowcount)


def purge_expired(engine: Engine, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Delete what has outlived its retention period. Idempotent."""
    now = now or utcnow()
    with write_transaction(engine) as conn:
        return {
            "usage_records": conn.execute(delete(UsageRecord).where(
                UsageRecord.at < now - timedelta(days=settings.usage_retention_days))).rowcount,
            "content_records": conn.execute(delete(ContentRecord).where(
                ContentRecord.at < now - timedelta(days=settings.content_log_retention_days))).rowcount,
            "login_sessions": conn.execute(delete(LoginSession).where(LoginSession.expires_at <= now)).rowcount,
            "quota_counters": conn.execute(delete(QuotaCounter).where(
                QuotaCounter.window_start < now - COUNTER_KEEP)).rowcount,
            "conversations": _delete_conversations(
                conn, Conversation.updated_at < now - timedelta(days=settings.chat_retention_days)),
        }


async def purge_loop(engine: Engine, settings: Settings, interval: float = PURGE_INTERVAL) -> None:
    """Apply retention at start and then every `interval` seconds, for the server's lifetime."""
    while True:
        try:
            removed = await asyncio.to_thread(purge_expired, engine, settings)
            if any(removed.values()):
                log.info("retention purge removed %s", removed)
        except Exception:
            log.exception("retention purge failed; retrying in %.0f s", interval)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(interval)
            continue
        return
