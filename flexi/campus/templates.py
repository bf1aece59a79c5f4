"""Prompt templates (issue 15, "Caipi"): a course's versioned instructions with typed parameters, run by name.

Who may do what (course roles from `course_members`, read on every request like course assistants):
- create, change, delete, see the instructions and every version in full: administrators (and auth=off's
  local user) or a teacher of the template's course;
- run (and see name, description, parameters, model): those, the owner, anyone whose user role is in the
  current version's `roles` (e.g. `service` for a Moodle site's key), and the members of a course in its
  `courses` (by default the template's own course). Everybody else gets 404, as if it did not exist; a
  switched-off template answers 403 to those who may see it.

Every change of the content adds a version (`prompt_template_versions`); runs record `template_id` and the
`template_version` that ran, and are billed to the template's course. `/templates/{ref}` takes the numeric
id or the slug (slugs start with a letter, so the two never clash).

A run is a chat: `POST /templates/{ref}/run {"parameters": {…}}` and the model name `template/<slug>` (or
`template/<slug>@<version>`) in /api/chat, /api/generate, /v1/chat/completions and /v1/completions go through
the same `TemplateModels` alias, and the route answers through `chat_response()` exactly like Ollama's
/api/chat (NDJSON stream, or one JSON object with `"stream": false`), so the wire format cannot drift. The
parameters are checked and enter the prompt as delimited data (flexi/prompt/template_params.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from flexi import i18n
from flexi.access.caller import Billing, Caller
from flexi.access.errors import forbidden
from flexi.access.principal import Principal
from flexi.access.service import AccessService
from flexi.api.ollama import chat_response
from flexi.api.ollama_types import ChatRequest
from flexi.campus.admin_common import AdminRoute, transaction
from flexi.campus.assistants import AssistantOptions
from flexi.db.models import (
    ROLES,
    Course,
    CourseMember,
    PromptTemplate,
    PromptTemplateVersion,
    iso_z,
    utcnow,
)
from flexi.engine.types import EngineError, ModelNotFound
from flexi.http.app_state import access_of, generation_of
from flexi.http.caller import caller_of
from flexi.prompt.template_params import (
    ParamSpec,
    check_specs,
    check_values,
    parse_message,
    render,
)
from flexi.service.generation import GenerationService, Target
from flexi.store.store import ModelRecord

router = APIRouter(prefix="/templates", tags=["templates"], route_class=AdminRoute)

RUN_ENDPOINT = "/templates/{id}/run"  # the usage records' endpoint (the template is in template_id)
PREFIX = "template/"
MAX_ID = 2**53
SLUG = r"^[a-z][a-z0-9-]{1,47}$"
_SLUG = re.compile(SLUG)
_PINNED = re.compile(r"^(?P<slug>[a-z][a-z0-9-]{1,47})(?:@(?P<version>[1-9][0-9]{0,8}))?$")


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    course_id: int = Field(ge=1, le=MAX_ID)
    slug: str | None = Field(None, pattern=SLUG)
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=5000)
    instructions: str = Field(min_length=1, max_length=20000)
    parameters: list[ParamSpec] = Field(default_factory=list, max_length=30)
    model: str = Field(min_length=1, max_length=255)
    options: AssistantOptions = Field(default_factory=AssistantOptions)
    roles: list[Literal[ROLES]] = Field(default_factory=list, max_length=len(ROLES))  # type: ignore[valid-type]
    courses: list[int] | None = Field(None, max_length=100)  # None: the template's own course


class TemplateChange(BaseModel):
    """Absent (or null) fields stay as they are; a change of any content field adds a version."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=5000)
    instructions: str | None = Field(None, min_length=1, max_length=20000)
    parameters: list[ParamSpec] | None = Field(None, max_length=30)
    model: str | None = Field(None, min_length=1, max_length=255)
    options: AssistantOptions | None = None
    roles: list[Literal[ROLES]] | None = Field(None, max_length=len(ROLES))  # type: ignore[valid-type]
    courses: list[int] | None = Field(None, max_length=100)
    disabled: bool | None = None


class TemplateRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=100)
    stream: bool = True
    version: int | None = Field(None, ge=1, le=10**9)  # an older version; default: the current one


class CourseFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(None, max_length=20000)
    learning_objectives: str | None = Field(None, max_length=20000)


CONTENT = ("name", "description", "instructions", "parameters", "model", "options", "roles", "courses")


# --- rights ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rights:
    run: bool
    edit: bool


def _privileged(principal: Principal) -> bool:
    return principal.is_admin or principal.local


def _roles_of(s: Session, principal: Principal) -> dict[int, str]:
    if principal.user_id is None:
        return {}
    return dict(s.execute(select(CourseMember.course_id, CourseMember.role)
                          .where(CourseMember.user_id == principal.user_id)).all())


def rights(principal: Principal, t: PromptTemplate, v: PromptTemplateVersion, roles: dict[int, str]) -> Rights:
    edit = _privileged(principal) or roles.get(t.course_id) == "teacher"
    owner = principal.user_id is not None and t.owner_id == principal.user_id
    allowed = principal.role in (v.roles or []) or any(c in roles for c in (v.courses or []))
    return Rights(run=edit or (not t.disabled and (owner or allowed)), edit=edit)


def _listed(principal: Principal, t: PromptTemplate, v: PromptTemplateVersion, roles: dict[int, str], r: Rights) -> bool:
    """Lists show what the caller may run; an administrator, who may run everything, sees those of their
    courses, their own and those opened to their role (all of them with ?all=true)."""
    if not r.run:
        return False
    if not principal.is_admin or principal.local:
        return True
    return (t.course_id in roles or t.owner_id == principal.user_id or principal.role in (v.roles or [])
            or any(c in roles for c in (v.courses or [])))


def _missing(locale: str, ref: str | int) -> EngineError:
    return EngineError(i18n.text("tpl_missing", locale, slug=str(ref)[:64]), 404, "not_found")


def _lookup(s: Session, ref: str) -> PromptTemplate | None:
    if ref.isdigit():
        return s.get(PromptTemplate, int(ref)) if len(ref) <= 16 and 1 <= int(ref) <= MAX_ID else None
    return s.scalar(select(PromptTemplate).where(PromptTemplate.slug == ref)) if _SLUG.match(ref) else None


def _version(s: Session, t: PromptTemplate, number: int | None = None) -> PromptTemplateVersion | None:
    return s.get(PromptTemplateVersion, (t.id, number if number is not None else t.version))


def find(s: Session, principal: Principal, locale: str, ref: str) -> tuple[PromptTemplate, PromptTemplateVersion, Rights]:
    """The template `ref` (id or slug) with its current version, if the caller may see it; else 404."""
    t = _lookup(s, ref)
    v = _version(s, t) if t is not None else None
    if t is None or v is None:
        raise _missing(locale, ref)
    r = rights(principal, t, v, _roles_of(s, principal))
    if not r.run:
        raise _missing(locale, ref)
    return t, v, r


def _editable(s: Session, principal: Principal, locale: str, ref: str) -> tuple[PromptTemplate, PromptTemplateVersion]:
    t, v, r = find(s, principal, locale, ref)
    if not r.edit:
        raise forbidden(i18n.text("tpl_edit", locale))
    return t, v


# --- views -----------------------------------------------------------------------------------
def _course_view(c: Course) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "title": c.title, "description": c.description,
            "learning_objectives": c.learning_objectives}


def _version_view(v: PromptTemplateVersion, edit: bool) -> dict[str, Any]:
    return {"version": v.version, "name": v.name, "description": v.description, "parameters": list(v.parameters),
            "model": v.model, "options": dict(v.options), "roles": list(v.roles), "courses": list(v.courses),
            "instructions": v.instructions if edit else None, "created_at": iso_z(v.created_at)}


def _view(t: PromptTemplate, v: PromptTemplateVersion, course: Course, r: Rights) -> dict[str, Any]:
    return {"id": t.id, "slug": t.slug, "model_name": PREFIX + t.slug, "course": _course_view(course),
            **_version_view(v, r.edit), "disabled": t.disabled, "can_edit": r.edit,
            "created_at": iso_z(t.created_at), "updated_at": iso_z(t.updated_at)}


# --- helpers for create and change -----------------------------------------------------------------
def _slug_from(name: str) -> str:
    plain = name.lower().replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    plain = unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:40].strip("-")
    if not slug or not slug[0].isalpha():
        slug = ("t-" + slug)[:40].strip("-")
    return slug if len(slug) >= 2 else "template"


def _free_slug(s: Session, wanted: str | None, name: str, locale: str) -> str:
    def taken(slug: str) -> bool:
        return s.scalar(select(PromptTemplate.id).where(PromptTemplate.slug == slug)) is not None

    if wanted is not None:
        if taken(wanted):
            raise EngineError(i18n.text("tpl_slug_taken", locale, slug=wanted), 409, "conflict")
        return wanted
    base = _slug_from(name)
    for n in range(1, 1000):
        slug = base if n == 1 else f"{base}-{n}"
        if not taken(slug):
            return slug
    raise EngineError(i18n.text("tpl_slug_taken", locale, slug=base), 409, "conflict")


def _check_courses(s: Session, courses: list[int], locale: str) -> list[int]:
    for course_id in courses:
        if not 1 <= course_id <= MAX_ID or s.get(Course, course_id) is None:
            raise EngineError(i18n.text("assistant_course", locale, course=course_id), 404, "not_found")
    return sorted(set(courses))


def _content(request: Request, s: Session, locale: str, fields: dict[str, Any], check_model: bool = True) -> dict[str, Any]:
    """A version's content from validated fields: parameters as plain dicts, the model's canonical name or
    an admin alias as named, so the template follows it (checked when it is given: it must exist and the
    teacher must be allowed to use it; every run checks again)."""
    params = [p if isinstance(p, ParamSpec) else ParamSpec.model_validate(p) for p in fields["parameters"]]
    check_specs(params, fields["instructions"])
    options = fields["options"]
    return {
        "name": fields["name"], "description": fields["description"], "instructions": fields["instructions"],
        "parameters": [p.model_dump(exclude_none=True) for p in params],
        "model": generation_of(request).saved_name(caller_of(request), fields["model"]) if check_model else fields["model"],
        "options": options.model_dump(exclude_none=True) if isinstance(options, AssistantOptions) else dict(options),
        "roles": sorted(set(fields["roles"])), "courses": _check_courses(s, list(fields["courses"]), locale),
    }


# --- routes ------------------------------------------------------------------------------------
@router.get("", summary="Prompt templates I may run or change")
def list_templates(request: Request, everything: bool = Query(False, alias="all")) -> dict[str, Any]:
    """Admins may ask for every template on the server with ?all=true (auth=off always gets all)."""
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        roles = _roles_of(s, principal)
        show_all = principal.local or (everything and principal.is_admin)
        rows = s.execute(select(PromptTemplate, PromptTemplateVersion, Course)
                         .join(PromptTemplateVersion, (PromptTemplateVersion.template_id == PromptTemplate.id)
                               & (PromptTemplateVersion.version == PromptTemplate.version))
                         .join(Course, Course.id == PromptTemplate.course_id)
                         .order_by(Course.name, PromptTemplate.slug).limit(2000)).all()
        out = []
        for t, v, course in rows:
            r = rights(principal, t, v, roles)
            if show_all or _listed(principal, t, v, roles, r):
                out.append(_view(t, v, course, r))
        return {"templates": out}


@router.post("", status_code=201, summary="Make a prompt template for a course I teach")
def create_template(request: Request, body: TemplateIn) -> dict[str, Any]:
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        course = s.get(Course, body.course_id)
        if not (_privileged(principal) or _roles_of(s, principal).get(body.course_id) == "teacher"):
            raise forbidden(i18n.text("tpl_edit", locale))
        if course is None:
            raise EngineError(i18n.text("assistant_course", locale, course=body.course_id), 404, "not_found")
        fields = body.model_dump(include=set(CONTENT))
        fields["parameters"], fields["options"] = body.parameters, body.options
        fields["courses"] = body.courses if body.courses is not None else [course.id]
        content = _content(request, s, locale, fields)
        now = utcnow()
        t = PromptTemplate(slug=_free_slug(s, body.slug, body.name, locale), course_id=course.id,
                           owner_id=principal.user_id, version=1, disabled=False, created_at=now, updated_at=now)
        s.add(t)
        s.flush()
        v = PromptTemplateVersion(template_id=t.id, version=1, created_by=principal.user_id, created_at=now, **content)
        s.add(v)
        s.flush()
        return _view(t, v, course, Rights(run=True, edit=True))


@router.get("/courses/{course_id}", summary="The course fields templates of this course may use")
def get_course_fields(request: Request, course_id: int) -> dict[str, Any]:
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        course = s.get(Course, course_id) if 1 <= course_id <= MAX_ID else None
        if course is None or not (_privileged(principal) or course_id in _roles_of(s, principal)):
            raise EngineError(i18n.text("assistant_course", locale, course=course_id), 404, "not_found")
        return _course_view(course)


@router.put("/courses/{course_id}", summary="Set the course's description and learning objectives (teachers)")
def set_course_fields(request: Request, course_id: int, body: CourseFields) -> dict[str, Any]:
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        course = s.get(Course, course_id) if 1 <= course_id <= MAX_ID else None
        role = _roles_of(s, principal).get(course_id)
        if course is None or not (_privileged(principal) or role is not None):
            raise EngineError(i18n.text("assistant_course", locale, course=course_id), 404, "not_found")
        if not (_privileged(principal) or role == "teacher"):
            raise forbidden(i18n.text("tpl_edit", locale))
        for field, value in body.model_dump(exclude_none=True).items():
            setattr(course, field, value)
        s.flush()
        return _course_view(course)


@router.get("/{ref}", summary="One prompt template (404 unless I may run it)")
def get_template(request: Request, ref: str) -> dict[str, Any]:
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        t, v, r = find(s, principal, locale, ref)
        return _view(t, v, s.get(Course, t.course_id), r)  # type: ignore[arg-type]


@router.put("/{ref}", summary="Change a template: a new version (fields left out stay as they are)")
def change_template(request: Request, ref: str, body: TemplateChange) -> dict[str, Any]:
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        t, v = _editable(s, principal, locale, ref)
        current = {k: getattr(v, k) for k in CONTENT}
        given = {k: getattr(body, k) for k in CONTENT if getattr(body, k) is not None}
        content = _content(request, s, locale, {**current, **given}, check_model="model" in given)
        now = utcnow()
        if any(content[k] != current[k] for k in CONTENT):
            v = PromptTemplateVersion(template_id=t.id, version=t.version + 1, created_by=principal.user_id,
                                      created_at=now, **content)
            s.add(v)
            t.version = v.version
        if body.disabled is not None:
            t.disabled = body.disabled
        t.updated_at = now
        s.flush()
        return _view(t, v, s.get(Course, t.course_id), Rights(run=True, edit=True))  # type: ignore[arg-type]


@router.delete("/{ref}", status_code=204, summary="Delete a template and its versions (usage numbers stay)")
def delete_template(request: Request, ref: str) -> Response:
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        t, _v = _editable(s, principal, locale, ref)
        s.delete(t)
    return Response(status_code=204)


@router.get("/{ref}/versions", summary="Every version of a template, newest first")
def list_versions(request: Request, ref: str) -> dict[str, Any]:
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        t, _v, r = find(s, principal, locale, ref)
        versions = s.scalars(select(PromptTemplateVersion).where(PromptTemplateVersion.template_id == t.id)
                             .order_by(PromptTemplateVersion.version.desc())).all()
        return {"slug": t.slug, "current": t.version, "versions": [_version_view(v, r.edit) for v in versions]}


@router.get("/{ref}/versions/{version}", summary="One version of a template")
def get_version(request: Request, ref: str, version: int) -> dict[str, Any]:
    principal, locale = caller_of(request).principal, caller_of(request).locale
    with transaction(request, locale) as s:
        t, _v, r = find(s, principal, locale, ref)
        v = _version(s, t, version) if 1 <= version <= 10**9 else None
        if v is None:
            raise EngineError(i18n.text("tpl_version_missing", locale, slug=t.slug, version=version), 404, "not_found")
        return {"slug": t.slug, "current": t.version, **_version_view(v, r.edit)}


@router.post("/{ref}/run", summary="Run a template with its parameters; answers exactly like Ollama's /api/chat")
async def run_template(request: Request, ref: str, body: TemplateRun) -> Response:
    """The parameters go in as the JSON user message of `template/<slug>@<version>`, the one path of every
    template run; `X-Flexi-Template-Version` names the version that ran."""
    t0 = time.perf_counter_ns()
    caller = caller_of(request)

    def load() -> tuple[str, int]:
        with Session(access_of(request).engine) as s:
            t, _v, _r = find(s, caller.principal, caller.locale, ref)
            return t.slug, t.version

    slug, current = await asyncio.to_thread(load)
    version = body.version or current
    req = ChatRequest.model_validate({
        "model": f"{PREFIX}{slug}@{version}", "stream": body.stream,
        "messages": [{"role": "user", "content": json.dumps(body.parameters, ensure_ascii=False)}]})
    response = await chat_response(request, req, t0, caller=caller.with_billing(Billing(None, endpoint=RUN_ENDPOINT)))
    response.headers["X-Flexi-Template-Version"] = str(version)
    return response


# --- templates as models: `template/<slug>` in every dialect -----------------------------------------
@dataclass(frozen=True)
class Resolved:
    template: PromptTemplate
    version: PromptTemplateVersion
    course: dict[str, str]


def _course_fields(c: Course) -> dict[str, str]:
    return {"name": c.name, "title": c.title or "", "description": c.description or "",
            "learning_objectives": c.learning_objectives or ""}


async def runnable(engine: Engine, caller: Caller, slug: str, version: int | None) -> Resolved:
    """The template `slug` (at `version`, default the current one) if this caller may run it now: 404 when
    they may not see it, 403 when it is switched off."""

    def load() -> Resolved:
        with Session(engine) as s:
            t, current, _r = find(s, caller.principal, caller.locale, slug)
            v = current if version is None else _version(s, t, version)
            if v is None:
                raise EngineError(i18n.text("tpl_version_missing", caller.locale, slug=slug, version=version),
                                  404, "not_found")
            s.expunge_all()
            return Resolved(t, v, _course_fields(s.get(Course, t.course_id)))  # type: ignore[arg-type]

    found = await asyncio.to_thread(load)
    if found.template.disabled:
        raise forbidden(i18n.text("tpl_disabled", caller.locale), code="template_disabled")
    return found


def builder(found: Resolved, locale: str) -> Any:
    """The chat of a run from the client's messages: the last user message carries the parameters."""
    specs = [ParamSpec.model_validate(p) for p in found.version.parameters]

    def build(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        text = next((m["content"] for m in reversed(messages)
                     if m.get("role") == "user" and isinstance(m.get("content"), str)), None)
        given = parse_message(text if text is not None else "", specs, locale)
        values = check_values(specs, given, found.course, locale)
        return render(found.version.instructions, specs, values, locale)

    return build


class TemplateModels:
    """`template/<slug>` (and `template/<slug>@<version>`) as the `model` of every dialect and in /api/tags
    and /v1/models, for plugins with fixed model lists: the last user message carries the parameters as a
    JSON object. The same rights as `/templates/{ref}/run`; billed to the template's course."""

    prefix = PREFIX

    def __init__(self, access: AccessService, generation: GenerationService) -> None:
        self.access = access
        self.generation = generation

    async def resolve(self, caller: Caller, name: str) -> Target:
        pinned = _PINNED.match(name[len(self.prefix):])
        if pinned is None:
            raise ModelNotFound(name)
        version = int(pinned["version"]) if pinned["version"] else None
        try:
            found = await runnable(self.access.engine, caller, pinned["slug"], version)
        except EngineError as exc:
            if exc.status == 404:
                raise ModelNotFound(name) from None  # like any model the caller may not see
            raise
        t, v = found.template, found.version
        record = self.generation.model(caller, v.model)
        endpoint = caller.billing.endpoint if caller.billing is not None else None  # the run route names itself
        billed = caller.with_billing(Billing(course_id=t.course_id, endpoint=endpoint, template_id=t.id,
                                             template_version=v.version))
        return Target(record, billed, name, options=dict(v.options), builder=builder(found, caller.locale))

    async def listed(self, caller: Caller) -> list[tuple[str, ModelRecord]]:
        principal = caller.principal

        def load() -> list[tuple[str, str]]:
            with Session(self.access.engine) as s:
                roles = _roles_of(s, principal)
                rows = s.execute(select(PromptTemplate, PromptTemplateVersion)
                                 .join(PromptTemplateVersion,
                                       (PromptTemplateVersion.template_id == PromptTemplate.id)
                                       & (PromptTemplateVersion.version == PromptTemplate.version))
                                 .where(PromptTemplate.disabled.is_(False))
                                 .order_by(PromptTemplate.slug).limit(500)).all()
                return [(t.slug, v.model) for t, v in rows
                        if principal.local or (principal.user_id is not None
                                               and _listed(principal, t, v, roles, rights(principal, t, v, roles)))]

        return self.generation.listed_as(caller, self.prefix, await asyncio.to_thread(load))
