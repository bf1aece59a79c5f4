"""Server-side chat history of the web chat (only with FLEXI_CHAT_HISTORY=server).

Every route acts on the caller's own conversations only: another user's
conversation id is answered exactly like a missing one (404). With the default
FLEXI_CHAT_HISTORY=browser nothing is stored on the server and every route
answers 404 with `{"error": …, "code": "history_off"}`, so the page knows to keep
conversations in the browser. The retention purge (flexi/access/privacy.py)
deletes conversations not updated for FLEXI_CHAT_RETENTION_DAYS; export and
erasure include them.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from flexi import i18n
from flexi.access.errors import AccessError, forbidden
from flexi.access.principal import Principal
from flexi.http.caller import caller_of
from flexi.campus.admin_common import AdminRoute, transaction
from flexi.campus.assistants import MAX_ID, find_usable
from flexi.db.models import Assistant, ChatMessage, Conversation, utcnow, iso_z
from flexi.engine.types import EngineError
from flexi.http.app_state import access_of

router = APIRouter(prefix="/me/conversations", tags=["conversations"], route_class=AdminRoute)

MAX_TITLE = 200
MAX_MESSAGES = 500
MAX_CONTENT = 200_000
MAX_CITATIONS = 50  # sources of one answer (an assistant quotes at most FLEXI_RAG_TOP_K ≤ 20 passages)
MAX_CITATION_TEXT = 20_000
MAX_CONVERSATIONS = 1000  # per user; the page deletes old ones or the retention purge does


class CitationIn(BaseModel):
    """One source of an answer as the assistant's final chunk gave it (kept so a reopened chat shows it)."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(ge=1, le=1000)
    document_id: int = Field(ge=1, le=MAX_ID)
    document: str = Field(max_length=255)
    page: int | None = Field(None, ge=1, le=1_000_000)
    text: str = Field("", max_length=MAX_CITATION_TEXT)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=MAX_CONTENT)
    citations: list[CitationIn] | None = Field(None, max_length=MAX_CITATIONS)


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field("", max_length=MAX_TITLE)
    model: str = Field(min_length=1, max_length=255)
    assistant_id: int | None = None
    messages: list[MessageIn] = Field(default_factory=list, max_length=MAX_MESSAGES)


class ConversationChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=MAX_TITLE)
    model: str | None = Field(None, min_length=1, max_length=255)


class MessagesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[MessageIn] = Field(max_length=MAX_MESSAGES)


def _caller(request: Request) -> tuple[Principal, int, str]:
    principal = caller_of(request).principal
    if principal.user_id is None:
        raise forbidden("there is no signed-in user: authentication is off (FLEXI_AUTH=off)")
    locale = caller_of(request).locale
    if access_of(request).settings.chat_history != "server":
        raise AccessError(i18n.text("history_off", locale), 404, "history_off", fields={"code": "history_off"})
    return principal, principal.user_id, locale


def _own(s: Session, user_id: int, conversation_id: int, locale: str) -> Conversation:
    conv = s.get(Conversation, conversation_id) if 1 <= conversation_id <= 2**53 else None
    if conv is None or conv.user_id != user_id:  # someone else's is reported like a missing one
        raise EngineError(i18n.text("conversation_missing", locale, id=conversation_id), 404, "not_found")
    return conv


def _summary(conv: Conversation, count: int) -> dict[str, Any]:
    return {"id": conv.id, "title": conv.title, "model": conv.model, "assistant_id": conv.assistant_id,
            "created_at": iso_z(conv.created_at), "updated_at": iso_z(conv.updated_at), "message_count": count}


def _full(s: Session, conv: Conversation) -> dict[str, Any]:
    rows = s.scalars(select(ChatMessage).where(ChatMessage.conversation_id == conv.id)
                     .order_by(ChatMessage.position, ChatMessage.id)).all()
    assistant = s.get(Assistant, conv.assistant_id) if conv.assistant_id is not None else None
    return {**_summary(conv, len(rows)), "assistant_slug": assistant.slug if assistant else None,  # to reopen it by link
            "messages": [{"role": m.role, "content": m.content, "created_at": iso_z(m.created_at),
                          **({"citations": m.citations} if m.citations else {})} for m in rows]}


def _replace_messages(s: Session, conv: Conversation, items: list[MessageIn]) -> None:
    s.execute(delete(ChatMessage).where(ChatMessage.conversation_id == conv.id))
    now = utcnow()
    s.add_all([ChatMessage(conversation_id=conv.id, role=m.role, content=m.content, position=i, created_at=now,
                           citations=[c.model_dump() for c in m.citations] if m.citations else None)
               for i, m in enumerate(items)])
    conv.updated_at = now


@router.get("", summary="My saved conversations, newest first (FLEXI_CHAT_HISTORY=server)")
def list_conversations(request: Request) -> dict[str, Any]:
    _principal, user_id, locale = _caller(request)
    counts = (select(ChatMessage.conversation_id, func.count().label("n"))
              .group_by(ChatMessage.conversation_id).subquery())
    with transaction(request, locale) as s:
        rows = s.execute(select(Conversation, func.coalesce(counts.c.n, 0))
                         .outerjoin(counts, counts.c.conversation_id == Conversation.id)
                         .where(Conversation.user_id == user_id)
                         .order_by(Conversation.updated_at.desc(), Conversation.id.desc())).all()
        return {"conversations": [_summary(conv, int(n)) for conv, n in rows]}


@router.post("", status_code=201, summary="Save a new conversation")
def create_conversation(request: Request, body: ConversationIn) -> dict[str, Any]:
    principal, user_id, locale = _caller(request)
    with transaction(request, locale) as s:
        if body.assistant_id is not None:
            find_usable(s, principal, locale, assistant_id=body.assistant_id)  # 404 unless the caller may use it
        owned = s.scalar(select(func.count()).select_from(Conversation).where(Conversation.user_id == user_id)) or 0
        if owned >= MAX_CONVERSATIONS:
            raise EngineError(i18n.text("conversations_full", locale, limit=MAX_CONVERSATIONS), 409, "conflict")
        now = utcnow()
        conv = Conversation(user_id=user_id, title=body.title, model=body.model, assistant_id=body.assistant_id,
                            created_at=now, updated_at=now)
        s.add(conv)
        s.flush()
        _replace_messages(s, conv, body.messages)
        s.flush()
        return _full(s, conv)


@router.get("/{conversation_id}", summary="One of my conversations with its messages")
def get_conversation(request: Request, conversation_id: int) -> dict[str, Any]:
    _principal, user_id, locale = _caller(request)
    with transaction(request, locale) as s:
        return _full(s, _own(s, user_id, conversation_id, locale))


@router.patch("/{conversation_id}", summary="Rename a conversation (or change its model)")
def change_conversation(request: Request, conversation_id: int, body: ConversationChange) -> dict[str, Any]:
    _principal, user_id, locale = _caller(request)
    with transaction(request, locale) as s:
        conv = _own(s, user_id, conversation_id, locale)
        if body.title is not None:
            conv.title = body.title
        if body.model is not None:
            conv.model = body.model
        conv.updated_at = utcnow()
        s.flush()
        count = s.scalar(select(func.count()).select_from(ChatMessage).where(ChatMessage.conversation_id == conv.id))
        return _summary(conv, int(count or 0))


@router.put("/{conversation_id}/messages", summary="Replace the whole message list (after each answer, edit, regeneration)")
def replace_messages(request: Request, conversation_id: int, body: MessagesIn) -> dict[str, Any]:
    _principal, user_id, locale = _caller(request)
    with transaction(request, locale) as s:
        conv = _own(s, user_id, conversation_id, locale)
        _replace_messages(s, conv, body.messages)
        s.flush()
        return _full(s, conv)


@router.delete("/{conversation_id}", status_code=204, summary="Delete a conversation")
def delete_conversation(request: Request, conversation_id: int) -> Response:
    _principal, user_id, locale = _caller(request)
    with transaction(request, locale) as s:
        conv = _own(s, user_id, conversation_id, locale)
        s.execute(delete(ChatMessage).where(ChatMessage.conversation_id == conv.id))
        s.delete(conv)
    return Response(status_code=204)
