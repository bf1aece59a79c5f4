"""Course assistants: a teacher's model + system prompt + options, shared by link.

Who may do what (course roles from `course_members`, checked in the database on
every request, not from the principal's cached memberships):
- create, change, delete: administrators (and auth=off's local user) or a teacher
  of the assistant's course;
- use (read, chat): audience `course` = the course's members (any course role),
  the owner and administrators; audience `campus` = anyone with scope inference
  who has the link. Everybody else gets 404, as if it did not exist. A disabled
  assistant is visible only to those who may change it, and nobody can chat with it;
- see the system prompt: owner, course teachers, administrators, or everyone who
  may use it when `show_system_prompt` is set;
- see its usage (counts only): owner, course teachers, administrators.

A chat is answered exactly like Ollama's /api/chat (flexi/api/ollama.py
`chat_response`), with the assistant's system prompt first, its model and
options; the access gate bills it to the assistant's course (`Billing`) and the
usage record carries `assistant_id`. Quotas, model policy and the fair queue
apply to the caller as for /api/chat.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Date, Engine, cast, distinct, func, or_, select
from sqlalchemy.orm import Session

from flexi import i18n
from flexi.access.errors import forbidden
from flexi.access.caller import Billing, Caller
from flexi.access.service import AccessService
from flexi.access.principal import Principal
from flexi.access.usage_journal import RUNNING
from flexi.http.caller import caller_of
from flexi.campus.admin_common import AdminRoute, transaction
from flexi.http.app_state import access_of, generation_of, state_of
from flexi.rag.grounding import CourseGrounding
from flexi.rag.library import DocumentLibrary
from flexi.api.ollama import chat_response
from flexi.api.ollama_types import ChatRequest
from flexi.service.generation import GenerationService, Target
from flexi.store.store import ModelRecord
from flexi.db.models import Assistant, Course, CourseMember, UsageRecord, utcnow, iso_z
from flexi.engine.types import BadRequest, EngineError, ModelNotFound

router = APIRouter(prefix="/assistants", tags=["assistants"], route_class=AdminRoute)

CHAT_ENDPOINT = "/assistants/{slug}/chat"  # the usage records' endpoint (the slug is in assistant_id)
MAX_ID = 2**53


class AssistantOptions(BaseModel):
    """The model options a teacher may fix for an assistant (a subset of Ollama's, with tighter bounds)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    num_predict: int | None = Field(None, ge=1, le=8192)
    num_ctx: int | None = Field(None, ge=256, le=131072)
    seed: int | None = None
    repeat_penalty: float | None = Field(None, ge=0, le=5)


Question = Annotated[str, Field(min_length=1, max_length=300)]


class AssistantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    course_id: int = Field(ge=1, le=MAX_ID)
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=5000)
    model: str = Field(min_length=1, max_length=255)
    system_prompt: str = Field("", max_length=20000)
    welcome_message: str = Field("", max_length=5000)
    example_questions: list[Question] = Field(default_factory=list, max_length=10)
    options: AssistantOptions = Field(default_factory=AssistantOptions)
    audience: Literal["course", "campus"] = "course"
    show_system_prompt: bool = False


class AssistantChange(BaseModel):
    """Absent (or null) fields stay as they are; `options` replaces the whole set."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=5000)
    model: str | None = Field(None, min_length=1, max_length=255)
    system_prompt: str | None = Field(None, max_length=20000)
    welcome_message: str | None = Field(None, max_length=5000)
    example_questions: list[Question] | None = Field(None, max_length=10)
    options: AssistantOptions | None = None
    audience: Literal["course", "campus"] | None = None
    show_system_prompt: bool | None = None
    disabled: bool | None = None


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]  # the assistant's system prompt is the only system message
    content: str = Field(max_length=200_000)


class AssistantChat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatTurn] = Field(min_length=1, max_length=500)
    stream: bool = True


# --- rights ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Rights:
    use: bool
    edit: bool
    see_prompt: bool
    see_usage: bool


def _privileged(principal: Principal) -> bool:
    return principal.is_admin or principal.local


def course_role(s: Session, principal: Principal, course_id: int) -> str | None:
    if principal.user_id is None:
        return None
    return s.scalar(select(CourseMember.role).where(CourseMember.course_id == course_id,
                                                    CourseMember.user_id == principal.user_id))


def rights(principal: Principal, a: Assistant, role: str | None) -> Rights:
    edit = _privileged(principal) or role == "teacher"
    owner = principal.user_id is not None and a.owner_id == principal.user_id
    use = edit or (not a.disabled and (owner or role is not None or a.audience == "campus"))
    return Rights(use=use, edit=edit, see_prompt=use and (edit or owner or a.show_system_prompt),
                  see_usage=use and (edit or owner))


def _missing(locale: str, slug: str | int) -> EngineError:
    return EngineError(i18n.text("assistant_missing", locale, slug=str(slug)[:64]), 404, "not_found")


def find_usable(s: Session, principal: Principal, locale: str, *, slug: str | None = None,
                assistant_id: int | None = None) -> tuple[Assistant, Rights]:
    """The assistant named by slug or id, if the caller may use it; else 404 (existence is not revealed)."""
    if assistant_id is not None:
        a = s.get(Assistant, assistant_id) if 1 <= assistant_id <= MAX_ID else None
    else:
        a = s.scalar(select(Assistant).where(Assistant.slug == slug)) if slug and len(slug) <= 32 else None
    if a is None:
        raise _missing(locale, slug if slug is not None else assistant_id or "")
    r = rights(principal, a, course_role(s, principal, a.course_id))
    if not r.use:
        raise _missing(locale, slug if slug is not None else assistant_id or "")
    return a, r


def _out(a: Assistant, course: Course, r: Rights) -> dict[str, Any]:
    return {
        "id": a.id, "slug": a.slug, "name": a.name, "description": a.description, "model": a.model,
        "course": {"id": course.id, "name": course.name, "title": course.title},
        "welcome_message": a.welcome_message, "example_questions": list(a.example_questions),
        "options": dict(a.options), "audience": a.audience, "show_system_prompt": a.show_system_prompt,
        "system_prompt": a.system_prompt if r.see_prompt else None,
        "disabled": a.disabled, "can_edit": r.edit, "can_view_usage": r.see_usage,
        "created_at": iso_z(a.created_at), "updated_at": iso_z(a.updated_at),
    }


def _options(options: AssistantOptions) -> dict[str, Any]:
    return options.model_dump(exclude_none=True)


def _check_model(request: Request, name: str) -> str:
    """The name to keep: an admin alias as named (it follows the alias), else the model's canonical name; only if
    the caller may use it (else 404 like Ollama)."""
    return generation_of(request).saved_name(caller_of(request), name)


# --- routes ----------------------------------------------------------------------------
@router.get("", summary="Assistants of my courses and the ones I made")
def list_assistants(request: Request, everything: bool = Query(False, alias="all")) -> dict[str, Any]:
    """Admins may ask for every assistant on the server with ?all=true (auth=off always gets all)."""
    principal = caller_of(request).principal
    locale = caller_of(request).locale
    with transaction(request, locale) as s:
        roles: dict[int, str] = {}
        if principal.user_id is not None:
            roles = dict(s.execute(select(CourseMember.course_id, CourseMember.role)
                                   .where(CourseMember.user_id == principal.user_id)).all())
        stmt = select(Assistant, Course).join(Course, Course.id == Assistant.course_id)
        if not (principal.local or (everything and principal.is_admin)):
            mine = [Assistant.course_id.in_(list(roles))] if roles else []
            if principal.user_id is not None:
                mine.append(Assistant.owner_id == principal.user_id)
            if not mine:
                return {"assistants": []}
            stmt = stmt.where(or_(*mine))
        out = []
        for a, course in s.execute(stmt.order_by(Course.name, Assistant.name, Assistant.id)).all():
            r = rights(principal, a, roles.get(a.course_id))
            if r.use:
                out.append(_out(a, course, r))
        return {"assistants": out}


@router.get("/{slug}", summary="One assistant (404 unless it is shared with me)")
def get_assistant(request: Request, slug: str) -> dict[str, Any]:
    principal = caller_of(request).principal
    locale = caller_of(request).locale
    with transaction(request, locale) as s:
        a, r = find_usable(s, principal, locale, slug=slug)
        return _out(a, s.get(Course, a.course_id), r)  # type: ignore[arg-type]


@router.post("", status_code=201, summary="Make an assistant for a course I teach")
def create_assistant(request: Request, body: AssistantIn) -> dict[str, Any]:
    principal = caller_of(request).principal
    locale = caller_of(request).locale
    with transaction(request, locale) as s:
        course = s.get(Course, body.course_id)
        role = course_role(s, principal, body.course_id)
        if not (_privileged(principal) or role == "teacher"):
            raise forbidden(i18n.text("assistant_edit", locale))
        if course is None:
            raise EngineError(i18n.text("assistant_course", locale, course=body.course_id), 404, "not_found")
        model = _check_model(request, body.model)
        now = utcnow()
        a = Assistant(slug=secrets.token_urlsafe(12), course_id=course.id, owner_id=principal.user_id, name=body.name,
                      description=body.description, model=model, system_prompt=body.system_prompt,
                      welcome_message=body.welcome_message, example_questions=list(body.example_questions),
                      options=_options(body.options), audience=body.audience,
                      show_system_prompt=body.show_system_prompt, disabled=False, created_at=now, updated_at=now)
        s.add(a)
        s.flush()
        return _out(a, course, rights(principal, a, role))


def _editable(s: Session, principal: Principal, locale: str, slug: str) -> tuple[Assistant, Rights]:
    """The assistant, if the caller may see it (else 404) and change it (else 403)."""
    a, r = find_usable(s, principal, locale, slug=slug)
    if not r.edit:
        raise forbidden(i18n.text("assistant_edit", locale))
    return a, r


@router.patch("/{slug}", summary="Change an assistant (fields left out stay as they are)")
def change_assistant(request: Request, slug: str, body: AssistantChange) -> dict[str, Any]:
    principal = caller_of(request).principal
    locale = caller_of(request).locale
    with transaction(request, locale) as s:
        a, r = _editable(s, principal, locale, slug)
        changes = body.model_dump(exclude_none=True, exclude={"options", "example_questions", "model"})
        for field, value in changes.items():
            setattr(a, field, value)
        if body.model is not None:
            a.model = _check_model(request, body.model)
        if body.options is not None:
            a.options = _options(body.options)
        if body.example_questions is not None:
            a.example_questions = list(body.example_questions)
        a.updated_at = utcnow()
        s.flush()
        return _out(a, s.get(Course, a.course_id), r)  # type: ignore[arg-type]


@router.delete("/{slug}", status_code=204, summary="Delete an assistant (its usage numbers stay, unlinked)")
def delete_assistant(request: Request, slug: str) -> Response:
    principal = caller_of(request).principal
    locale = caller_of(request).locale
    with transaction(request, locale) as s:
        a, _r = _editable(s, principal, locale, slug)
        s.delete(a)
    return Response(status_code=204)


def _day(s: Session) -> Any:
    if s.get_bind().dialect.name == "sqlite":
        return func.date(UsageRecord.at)  # stored as UTC text
    return cast(func.timezone("UTC", UsageRecord.at), Date)


@router.get("/{slug}/usage", summary="How much the assistant is used, per day (counts only, no text, no people)")
def assistant_usage(request: Request, slug: str, days: int = 30) -> dict[str, Any]:
    principal = caller_of(request).principal
    locale = caller_of(request).locale
    if not 1 <= days <= 3660:
        raise BadRequest("days must be between 1 and 3660", param="days")
    with transaction(request, locale) as s:
        a, r = find_usable(s, principal, locale, slug=slug)
        if not r.see_usage:
            raise forbidden(i18n.text("assistant_usage", locale))
        since = utcnow() - timedelta(days=days)
        where = (UsageRecord.assistant_id == a.id, UsageRecord.at >= since,
                 UsageRecord.status != RUNNING)  # requests count once they ended (flexi.access.usage_journal)
        day = _day(s)
        rows = s.execute(select(day.label("day"), func.count(), func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
                                func.coalesce(func.sum(UsageRecord.completion_tokens), 0))
                         .where(*where).group_by(day).order_by(day)).all()
        users = s.scalar(select(func.count(distinct(UsageRecord.user_pseudonym))).where(*where)) or 0
    per_day = [{"day": str(d), "requests": int(n), "prompt_tokens": int(p), "completion_tokens": int(c)}
               for d, n, p, c in rows]
    totals = {k: sum(row[k] for row in per_day) for k in ("requests", "prompt_tokens", "completion_tokens")}
    return {"assistant": a.slug, "since": iso_z(since), "days": per_day, "totals": totals, "users": int(users)}


@router.post("/{slug}/chat", summary="Chat with the assistant; answers exactly like Ollama's /api/chat")
async def chat(request: Request, slug: str, body: AssistantChat) -> Response:
    t0 = time.perf_counter_ns()
    caller = caller_of(request)
    a = await usable_assistant(access_of(request).engine, caller, slug)
    turns = [{"role": "system", "content": a.system_prompt}] if a.system_prompt else []
    turns += [{"role": m.role, "content": m.content} for m in body.messages]
    req = ChatRequest.model_validate({"model": a.model, "messages": turns, "stream": body.stream,
                                      "options": dict(a.options) or None})
    billed = caller.with_billing(billing_of(a, CHAT_ENDPOINT))
    return await chat_response(request, req, t0, caller=billed,
                               grounding=await grounding_for(state_of(request).documents, a.id))


async def usable_assistant(engine: Engine, caller: Caller, slug: str) -> Assistant:
    """The assistant `slug` if this caller may chat with it now: 404 when they may not see it, 403 when it
    is switched off. One check for the chat route and `assistant/<slug>` as a model."""

    def load() -> Assistant:  # a plain read (no write lock on SQLite): this is every chat turn's path
        with Session(engine) as s:
            return find_usable(s, caller.principal, caller.locale, slug=slug)[0]

    a = await asyncio.to_thread(load)
    if a.disabled:
        raise forbidden(i18n.text("assistant_disabled", caller.locale), code="assistant_disabled")
    return a


def billing_of(a: Assistant, endpoint: str | None = None) -> Billing:
    """A chat with an assistant is billed to its course and recorded under the assistant."""
    return Billing(course_id=a.course_id, assistant_id=a.id, endpoint=endpoint)


async def grounding_for(library: DocumentLibrary, assistant_id: int) -> CourseGrounding | None:
    """Retrieval for a chat with this assistant, if it has documents (otherwise it answers as before)."""
    return CourseGrounding(library, assistant_id) if await asyncio.to_thread(library.has_documents, assistant_id) else None


# --- course assistants as models: `assistant/<slug>` in every dialect ------------------------
class AssistantModels:
    """`assistant/<slug>` as the `model` of /api/chat, /api/generate and /v1/(chat/)completions, and in
    /api/tags and /v1/models, so Moodle plugins and scripts use a course assistant without new code.

    The same rights as /assistants/{slug}/chat: only who may use the assistant, and only if they may use
    its model; the usage is billed to the assistant's course. Listed are the assistants of the caller's
    courses and their own (a campus-wide assistant is reached by its link, never listed to everyone)."""

    prefix = "assistant/"

    def __init__(self, access: AccessService, generation: GenerationService, documents: DocumentLibrary) -> None:
        self.access = access
        self.generation = generation
        self.documents = documents

    async def resolve(self, caller: Caller, name: str) -> Target:
        try:
            a = await usable_assistant(self.access.engine, caller, name[len(self.prefix):])
        except EngineError as exc:
            if exc.status == 404:
                raise ModelNotFound(name) from None  # like any model the caller may not see
            raise
        record = self.generation.model(caller, a.model)
        return Target(record, caller.with_billing(billing_of(a)), self.prefix + a.slug, instructions=a.system_prompt,
                      options=dict(a.options), grounding=await grounding_for(self.documents, a.id))

    async def listed(self, caller: Caller) -> list[tuple[str, ModelRecord]]:
        principal = caller.principal

        def load() -> list[tuple[str, str]]:
            with Session(self.access.engine) as s:
                stmt = select(Assistant.slug, Assistant.model).where(Assistant.disabled.is_(False))
                if not principal.local:
                    if principal.user_id is None:
                        return []
                    mine = select(CourseMember.course_id).where(CourseMember.user_id == principal.user_id)
                    stmt = stmt.where(or_(Assistant.course_id.in_(mine), Assistant.owner_id == principal.user_id))
                return [(slug, model) for slug, model in s.execute(stmt.order_by(Assistant.slug).limit(500))]

        return self.generation.listed_as(caller, self.prefix, await asyncio.to_thread(load))
