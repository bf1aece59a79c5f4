"""REST admin API under `/admin/…`: users, groups, courses, API keys, quotas, model policies.

A thin layer over `flexi.access.admin_ops` (the CLI uses the same functions):
it validates the wire shapes (unknown fields → 422), runs one transaction per
request, and after changes that affect running requests tells the access
layer: revoked key → its streams end; disabled or demoted user → their streams
end and cached memberships are dropped; policy change → policies reloaded.
Handlers are plain `def`: FastAPI runs them in a worker thread, so the
synchronous database calls never block the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from flexi.access import admin_ops as ops
from flexi.access.admin_ops import memberships as ms
from flexi.campus.admin_common import AdminRoute, require_admin, transaction
from flexi.http.app_state import access_of

Role = Literal["admin", "teacher", "student", "researcher", "service"]
CourseRole = Literal["teacher", "tutor", "student"]
Locale = Literal["de", "en"]
Scope = Literal["inference", "account", "manage", "admin"]
Id = Annotated[int, Field(ge=1, le=ops.MAX_ID)]
PathId = Annotated[int, Path(ge=1, le=ops.MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=ops.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=ops.MAX_OFFSET)]
Search = Annotated[str | None, Query(max_length=255, description="Case-insensitive substring.")]

router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, dependencies=[Depends(require_admin)])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def given(self) -> dict[str, Any]:
        """Only the fields the client sent (absent = unchanged, null = cleared)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


# --- request bodies ----------------------------------------------------------------------------------
class UserCreate(Strict):
    subject: str = Field(max_length=255, description="External identity: SSO `sub` or a local user name.")
    display_name: str | None = Field(None, max_length=255)
    email: str | None = Field(None, max_length=320)
    role: Role = "student"
    locale: Locale | None = Field(None, description="Language of the user's messages; default German (de).")
    password: str | None = Field(None, max_length=1024, description="For local sign-in without SSO.")


class UserUpdate(Strict):
    role: Role | None = None
    display_name: str | None = Field(None, max_length=255)
    email: str | None = Field(None, max_length=320)
    locale: Locale | None = None
    disabled: bool | None = None


class PasswordSet(Strict):
    password: str | None = Field(max_length=1024, description="null removes the password (SSO only).")


class QuotaSet(Strict):
    requests_per_minute: int | None = Field(None, ge=0, le=ops.MAX_ID)
    tokens_per_day: int | None = Field(None, ge=0, le=ops.MAX_ID)
    tokens_per_week: int | None = Field(None, ge=0, le=ops.MAX_ID)


class KeyCreate(Strict):
    name: str = Field("", max_length=100)
    scopes: list[Scope] | None = Field(None, max_length=3, description="Default: [\"inference\"].")
    models: list[str] | None = Field(None, max_length=ops.MAX_KEY_MODELS, description="Model names/globs; null = all the owner may use.")
    expires_in_days: int | None = Field(None, ge=1, le=ops.MAX_KEY_DAYS)
    expires_at: str | None = Field(None, max_length=40, description="ISO date (valid through that day, UTC) or datetime.")
    course_id: Id | None = Field(None, description="Bill usage and quota to this course.")
    end_user_limits: QuotaSet | None = Field(None, description="A service account's key (a Moodle site): the limits "
                                             "EACH of its end users (OpenAI `user`) gets, besides the key's own.")

    def expiry(self) -> object:
        """Days or ISO date; raises AdminError if both are given (call inside a transaction)."""
        return ops.expiry_from(self.expires_in_days, self.expires_at)


class NamedCreate(Strict):
    name: str = Field(max_length=100)
    title: str | None = Field(None, max_length=255)


class CourseMemberSet(Strict):
    role: CourseRole = "student"


class PolicyCreate(Strict):
    pattern: str = Field(max_length=255, description="Model name or glob, e.g. llama3* or smollm2:135m.")
    allowed_roles: list[Role] | None = Field(None, description="null = no restriction by role.")
    allowed_groups: list[str] | None = Field(None, max_length=ops.MAX_LIST_ITEMS)
    max_context: int | None = Field(None, ge=1, le=ops.MAX_ID)
    max_output: int | None = Field(None, ge=1, le=ops.MAX_ID)


class PolicyUpdate(Strict):
    pattern: str | None = Field(None, max_length=255)
    allowed_roles: list[Role] | None = None
    allowed_groups: list[str] | None = Field(None, max_length=ops.MAX_LIST_ITEMS)
    max_context: int | None = Field(None, ge=1, le=ops.MAX_ID)
    max_output: int | None = Field(None, ge=1, le=ops.MAX_ID)


# --- after-effects -------------------------------------------------------------------------------------
def _user_reduced(request: Request, user_id: int) -> None:
    access = access_of(request)
    access.gate.end_streams(user_id=user_id)
    access.authn.forget(user_id)
    access.quotas.forget()


def _memberships_changed(request: Request, user_id: int | None = None) -> None:
    access_of(request).authn.forget(user_id)


# --- users -------------------------------------------------------------------------------------------------
@router.get("/users", summary="List users")
def list_users(request: Request, role: Role | None = None, search: Search = None, disabled: bool | None = None,
               limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    with transaction(request) as s:
        users = ops.list_users(s, role=role, search=search, disabled=disabled, limit=limit, offset=offset)
        return {"users": [ops.user_view(u) for u in users], "limit": limit, "offset": offset}


@router.post("/users", status_code=201, summary="Create a user")
def create_user(request: Request, body: UserCreate) -> dict[str, Any]:
    access = access_of(request)
    with transaction(request) as s:
        user = ops.create_user(s, access.pseudonym_key, body.subject, display_name=body.display_name,
                               email=body.email, role=body.role, locale=body.locale,
                               password=body.password)
        return ops.user_view(user)


@router.get("/users/{user_id}", summary="Show a user with memberships and keys")
def show_user(request: Request, user_id: PathId) -> dict[str, Any]:
    with transaction(request) as s:
        user = ops.get_user(s, user_id)
        out = ops.user_view(user)
        out["keys"] = [ops.key_view(k) for k in ops.list_api_keys(s, owner_id=user.id, limit=ops.MAX_LIMIT)]
        return out


@router.patch("/users/{user_id}", summary="Change role, name, e-mail, language or disable/enable")
def update_user(request: Request, user_id: PathId, body: UserUpdate) -> dict[str, Any]:
    changes = body.given()
    for name in ("role", "locale", "disabled"):
        if name in changes and changes[name] is None:
            changes.pop(name)  # null for a non-nullable field = unchanged
    with transaction(request) as s:
        result = ops.update_user(s, user_id, changes)
        view = ops.user_view(result.user)
    if result.reduced:
        _user_reduced(request, user_id)
    return view


@router.put("/users/{user_id}/password", summary="Set or remove a local password")
def set_password(request: Request, user_id: PathId, body: PasswordSet) -> dict[str, Any]:
    with transaction(request) as s:
        return ops.user_view(ops.set_password(s, user_id, body.password))


@router.delete("/users/{user_id}", status_code=204, summary="Delete a user, their keys and memberships")
def delete_user(request: Request, user_id: PathId) -> Response:
    with transaction(request) as s:
        ops.delete_user(s, user_id)
    _user_reduced(request, user_id)
    return Response(status_code=204)


@router.get("/users/{user_id}/keys", summary="List a user's API keys")
def user_keys(request: Request, user_id: PathId) -> dict[str, Any]:
    with transaction(request) as s:
        user = ops.get_user(s, user_id)
        return {"keys": [ops.key_view(k) for k in ops.list_api_keys(s, owner_id=user.id, limit=ops.MAX_LIMIT)]}


@router.post("/users/{user_id}/keys", status_code=201, summary="Create an API key for a user (shown once)")
def create_user_key(request: Request, user_id: PathId, body: KeyCreate) -> dict[str, Any]:
    with transaction(request) as s:
        created, row = ops.create_api_key(s, user_id, admins=access_of(request).settings.admins, name=body.name, scopes=body.scopes, models=body.models,
                                          expires=body.expiry(), course_id=body.course_id)
        extra = {}
        if body.end_user_limits is not None:  # a new key: no limits of it are cached anywhere yet
            extra["end_user_limits"] = ops.set_quota(s, "enduser", row.id, body.end_user_limits.given())
        return {**ops.key_view(row), **extra, "key": created.key,
                "warning": "this is the only time the full key is shown; store it now"}


# --- keys --------------------------------------------------------------------------------------------------
@router.get("/keys", summary="List API keys (prefixes only)")
def list_keys(request: Request, user_id: Annotated[int | None, Query(ge=1, le=ops.MAX_ID)] = None,
              state: Literal["active", "revoked", "expired", "all"] = "all",
              prefix: Annotated[str | None, Query(max_length=64)] = None,
              limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    with transaction(request) as s:
        rows = ops.list_api_keys(s, owner_id=user_id, state=state, prefix=prefix, limit=limit, offset=offset)
        return {"keys": [{**ops.key_view(r), "owner": r.owner.subject} for r in rows], "limit": limit, "offset": offset}


@router.get("/keys/{key_id}", summary="Show an API key")
def show_key(request: Request, key_id: PathId) -> dict[str, Any]:
    with transaction(request) as s:
        return ops.key_view(ops.get_api_key(s, key_id))


@router.delete("/keys/{key_id}", summary="Revoke an API key (its open streams end)")
def revoke_key(request: Request, key_id: PathId) -> dict[str, Any]:
    with transaction(request) as s:
        view = ops.key_view(ops.revoke_api_key(s, key_id))
    access_of(request).gate.end_streams(key_id=key_id)
    return view


# --- groups and courses: one set of routes per `Membership` spec --------------------------------------------
def _membership_routes(spec: ms.Membership) -> None:
    """list/create/show/delete and add/remove member under /admin/{groups|courses}. The path parameter keeps
    its wire name (`group_id`, `course_id`: validation errors name it) through an alias."""
    kind, plural, id_name = spec.kind, spec.plural, spec.id_field
    base = f"/{plural}/{{{id_name}}}"

    def entity_id() -> Any:  # a default, not an annotation: annotations are strings here (PEP 563)
        return Path(ge=1, le=ops.MAX_ID, alias=id_name)

    @router.get(f"/{plural}", summary=f"List {plural}", name=f"list_{plural}")
    def list_all(request: Request, search: Search = None, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        with transaction(request) as s:
            return {plural: [ms.view(row, n) for row, n in ms.list_all(spec, s, search=search, limit=limit, offset=offset)]}

    @router.post(f"/{plural}", status_code=201, summary=f"Create a {kind}", name=f"create_{kind}")
    def create(request: Request, body: NamedCreate) -> dict[str, Any]:
        with transaction(request) as s:
            return ms.view(ms.create(spec, s, body.name, body.title), 0)

    @router.get(base, summary=f"Show a {kind} with its members", name=f"show_{kind}")
    def show(request: Request, *, ident: int = entity_id()) -> dict[str, Any]:
        with transaction(request) as s:
            row = ms.get(spec, s, ident)
            members = ms.members(spec, s, row.id)
            return {**ms.view(row, len(members)),
                    "users": [ms.member_view(spec, u, r) for u, r in members]}

    @router.delete(base, status_code=204, summary=f"Delete a {kind}", name=f"delete_{kind}")
    def remove(request: Request, *, ident: int = entity_id()) -> Response:
        with transaction(request) as s:
            ms.remove(spec, s, ident)
        _memberships_changed(request)
        return Response(status_code=204)

    def put_member(request: Request, ident: int, user_id: int, role: str | None) -> dict[str, Any]:
        with transaction(request) as s:
            added = ms.put_member(spec, s, ident, user_id, role)
        _memberships_changed(request, user_id)
        return {id_name: ident, "user_id": user_id, **({"role": role} if spec.member_roles else {}), "added": added}

    member = f"{base}/members/{{user_id}}"
    if spec.member_roles:
        @router.put(member, summary=f"Add a user to a {kind} or change their {kind} role", name=f"set_{kind}_member")
        def set_member(request: Request, *, ident: int = entity_id(), user_id: PathId,
                       body: CourseMemberSet | None = None) -> dict[str, Any]:
            return put_member(request, ident, user_id, body.role if body is not None else spec.default_role)
    else:
        @router.put(member, summary=f"Add a user to a {kind}", name=f"add_{kind}_member")
        def add_member(request: Request, *, ident: int = entity_id(), user_id: PathId) -> dict[str, Any]:
            return put_member(request, ident, user_id, None)

    @router.delete(member, status_code=204, summary=f"Remove a user from a {kind}", name=f"remove_{kind}_member")
    def remove_member(request: Request, *, ident: int = entity_id(), user_id: PathId) -> Response:
        with transaction(request) as s:
            ms.remove_member(spec, s, ident, user_id)
        _memberships_changed(request, user_id)
        return Response(status_code=204)


_membership_routes(ops.GROUPS)
_membership_routes(ops.COURSES)


# --- quotas --------------------------------------------------------------------------------------------------------
QuotaKind = Literal["user", "key", "course", "role", "enduser"]
SubjectRef = Annotated[str, Path(max_length=32, description="An id (user, key, course; enduser: the key whose end "
                                                            "users each get these limits) or a role name.")]


@router.get("/quotas", summary="List quotas (roles, users, keys, courses, end users of keys)")
def list_quotas(request: Request, kind: QuotaKind | None = None) -> dict[str, Any]:
    with transaction(request) as s:
        return {"quotas": ops.list_quotas(s, kind, access_of(request).settings.default_role_quotas)}


@router.put("/quotas/{kind}/{subject}", summary="Set limits (fields absent = unchanged, null = no limit)")
def set_quota(request: Request, kind: QuotaKind, subject: SubjectRef, body: QuotaSet) -> dict[str, Any]:
    with transaction(request) as s:
        result = ops.set_quota(s, kind, subject, body.given(), access_of(request).settings.default_role_quotas)
    access_of(request).quotas.forget()  # cached limits: the next request sees the new ones
    return result


@router.delete("/quotas/{kind}/{subject}", status_code=204, summary="Remove limits")
def clear_quota(request: Request, kind: QuotaKind, subject: SubjectRef) -> Response:
    with transaction(request) as s:
        ops.clear_quota(s, kind, subject)
    access_of(request).quotas.forget()
    return Response(status_code=204)


@router.get("/quotas/{kind}/{subject}/usage", summary="Limits in force and use in the current windows")
def quota_usage(request: Request, kind: Literal["user", "key", "course"], subject: SubjectRef) -> dict[str, Any]:
    with transaction(request) as s:
        return ops.quota_usage(s, kind, subject, access_of(request).settings.default_role_quotas)


# --- model policies ------------------------------------------------------------------------------------------------
def _policies_changed(request: Request) -> None:
    access_of(request).policies.invalidate()


@router.get("/policies", summary="List model policies")
def list_policies(request: Request, search: Search = None) -> dict[str, Any]:
    with transaction(request) as s:
        return {"policies": [ops.policy_view(p) for p in ops.list_policies(s, search=search)]}


@router.post("/policies", status_code=201, summary="Create a model policy")
def create_policy(request: Request, body: PolicyCreate) -> dict[str, Any]:
    fields = body.given()
    fields.pop("pattern", None)
    with transaction(request) as s:
        view = ops.policy_view(ops.create_policy(s, body.pattern, **fields))
    _policies_changed(request)
    return view


@router.get("/policies/{policy_id}", summary="Show a model policy")
def show_policy(request: Request, policy_id: PathId) -> dict[str, Any]:
    with transaction(request) as s:
        return ops.policy_view(ops.get_policy(s, policy_id))


@router.patch("/policies/{policy_id}", summary="Change a model policy (fields absent = unchanged)")
def update_policy(request: Request, policy_id: PathId, body: PolicyUpdate) -> dict[str, Any]:
    changes = body.given()
    if "pattern" in changes and changes["pattern"] is None:
        changes.pop("pattern")
    with transaction(request) as s:
        view = ops.policy_view(ops.update_policy(s, policy_id, changes))
    _policies_changed(request)
    return view


@router.delete("/policies/{policy_id}", status_code=204, summary="Delete a model policy")
def delete_policy(request: Request, policy_id: PathId) -> Response:
    with transaction(request) as s:
        ops.delete_policy(s, policy_id)
    _policies_changed(request)
    return Response(status_code=204)
