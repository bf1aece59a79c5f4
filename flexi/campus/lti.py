"""LTI 1.3 tool routes: Moodle (or any LTI 1.3 platform) launches course assistants inside a course.

- `GET|POST /lti/login`: OIDC third-party initiated login → the platform's auth URL with state and nonce;
  the state is bound to this browser by a cookie (SameSite=None; Secure; Partitioned: the launch
  happens in the platform's iframe, a third-party context); at most `login_limit.PER_ADDRESS` logins
  per client address in ten minutes (per replica);
- `POST /lti/launch`: the platform posts `id_token` and `state`; checked in `flexi.lti.launch`. A resource
  link opens its assistant's chat (`/lti/app`) signed in with an LTI session cookie; a deep-linking
  request shows teachers the choice page;
- `POST /lti/deeplink`: the teacher's choice → a signed `LtiDeepLinkingResponse` posted to the platform;
- `GET /lti/jwks`: Flexi's public keys; `GET /lti/register`: dynamic registration;
- `GET /lti/app` (served by flexi.web.routes): the web interface, framable by the launching platform only.
These paths are public for the access middleware: each route checks what it needs itself (a signed
token and this browser's state, a one-time ticket and the session, a registration token).
Refusals are pages in the person's language; the log names the reason and the platform, never a token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flexi.access.credentials import Credential, lti_session_cookie_name, session_token
from flexi.access.oidc import Identity
from flexi.campus.auth_routes import base_url, upsert_user
from flexi.campus import lti_pages
from flexi.db.models import Assistant, Course, CourseMember, Group, GroupMember, LtiLink, LtiPlatform, User, utcnow
from flexi.engine.types import EngineError
from flexi.http.app_state import access_of, generation_of, state_of
from flexi.http.caller import build_caller, request_address, request_id_of
from flexi.http.forwarded import address_key
from flexi.http.locale import locale_of
from flexi.http.sessions import create_session, is_secure, third_party_cookie
from flexi.lti import deeplink, keys, launch as lti_launch, logins, platforms, registration
from flexi.lti.claims import DEEP_LINKING_REQUEST, Launch, is_platform_admin, launch_from_claims
from flexi.lti.errors import LtiError
from flexi.lti.login_limit import LoginLimit
from flexi.lti.platform_keys import PlatformKeys

router = APIRouter(prefix="/lti", tags=["lti"], include_in_schema=False)
log = logging.getLogger("flexi.lti")

STATE_COOKIE = "flexi_lti_state"
SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_FIELD = 70_000


def _locale(request: Request) -> str:
    return locale_of(request, default=access_of(request).settings.default_locale)


def _keys(request: Request) -> PlatformKeys:
    state = request.app.state
    found = getattr(state, "lti_platform_keys", None)
    if found is None:
        found = state.lti_platform_keys = PlatformKeys(access_of(request).settings.lti_allow_hosts)
    return found


def _login_limit(request: Request) -> LoginLimit:
    state = request.app.state
    found = getattr(state, "lti_login_limit", None)
    if found is None:
        found = state.lti_login_limit = LoginLimit()
    return found


def _state_cookie(secure: bool) -> str:
    return ("__Host-" + STATE_COOKIE) if secure else STATE_COOKIE


def _refused(request: Request, exc: LtiError, step: str, platform_id: int | None = None,
             locale: str | None = None) -> HTMLResponse:
    log.warning("LTI %s refused: %s (platform %s)", step, exc.reason, platform_id if platform_id is not None else "-")
    with access_of(request).sessions() as s:
        origins = platforms.all_origins(s)
    return lti_pages.error_page(exc.key, locale or _locale(request), exc.status, origins, **exc.values)


async def _params(request: Request) -> dict[str, str]:
    params = {k: v for k, v in request.query_params.items() if len(v) <= MAX_FIELD}
    if request.method == "POST":
        form = await request.form(max_files=0, max_fields=50)
        params.update({k: v for k, v in form.items() if isinstance(v, str) and len(v) <= MAX_FIELD})
    return params


# --- login initiation -------------------------------------------------------------------------
@router.api_route("/login", methods=["GET", "POST"])
async def login(request: Request) -> Response:
    params = await _params(request)
    access = access_of(request)
    secure = is_secure(request, access.settings)
    existing = request.cookies.get(_state_cookie(secure), "")
    browser_secret = existing if SECRET.fullmatch(existing) else secrets.token_urlsafe(32)
    platform_id: int | None = None
    try:
        if not _login_limit(request).allow(address_key(request_address(request))):
            raise LtiError("lti_too_many_logins", 429, "too many logins started from one address")
        with access.sessions() as s:
            platform = platforms.find(s, params.get("iss", ""), params.get("client_id"))
            if platform is None:
                raise LtiError("lti_unknown_platform", 400, "unknown issuer or client id")
            platform_id = platform.id
            deployment = params.get("lti_deployment_id")
            if deployment is not None and deployment not in (platform.deployment_ids or []):
                raise LtiError("lti_deployment", 403, "unknown deployment id")
            if not params.get("login_hint"):
                raise LtiError("lti_no_user", 400, "no login_hint")
            state, nonce = logins.start(s, platform.id, browser_secret)
            auth_url, client_id = platform.auth_url, platform.client_id
            s.commit()
    except LtiError as exc:
        return _refused(request, exc, "login", platform_id)
    query = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
             "client_id": client_id, "redirect_uri": base_url(request) + "/lti/launch",
             "login_hint": params["login_hint"], "state": state, "nonce": nonce}
    if params.get("lti_message_hint"):
        query["lti_message_hint"] = params["lti_message_hint"]
    log.info("LTI login started (platform %s)", platform_id)
    response = RedirectResponse(auth_url + ("&" if "?" in auth_url else "?") + urlencode(query), status_code=302)
    third_party_cookie(response, _state_cookie(secure), browser_secret, logins.LOGIN_SECONDS)
    return response


# --- launch ---------------------------------------------------------------------------------------
@router.post("/launch")
async def launch(request: Request) -> Response:
    access = access_of(request)
    params = await _params(request)
    secure = is_secure(request, access.settings)
    platform_id: int | None = None
    locale = _locale(request)
    try:
        with access.sessions() as s:
            started = logins.consume(s, params.get("state"), request.cookies.get(_state_cookie(secure)))
            s.commit()  # used, whatever comes next: the same state cannot be tried twice
            platform_id = started.platform_id
            platform = s.get(LtiPlatform, started.platform_id)
            if platform is None:
                raise LtiError("lti_unknown_platform", 400, "platform removed")
            s.expunge(platform)
        claims = await lti_launch.verify(params.get("id_token"), platform, started.nonce, _keys(request))
        facts = launch_from_claims(claims, platform.id)
        locale = facts.locale or locale
        if facts.context_id is None:
            raise LtiError("lti_no_context", 400, "no context claim")
        if facts.message_type == DEEP_LINKING_REQUEST:
            if not facts.is_teacher:
                raise LtiError("lti_deep_link_teacher", 403, "deep linking by a non-teacher")
            if not facts.deep_link_return_url:
                raise LtiError("lti_token", 400, "no deep_link_return_url")
            platforms.check_url(facts.deep_link_return_url, "deep_link_return_url")
    except LtiError as exc:
        return _refused(request, exc, "launch", platform_id, locale)
    user_id, token, ticket, choices, target = _admitted(access, platform, facts)
    access.authn.forget(user_id)  # the new course membership counts at once
    log.info("LTI launch accepted (platform %s, %s, course role %s)", platform.id, facts.message_type,
             facts.course_role)
    origins = platforms.origins_of(platform)
    if facts.message_type == DEEP_LINKING_REQUEST:
        response: Response = lti_pages.deep_link_choice(ticket, choices, await _models(request, token),
                                                        access.settings.default_model, locale, origins)
    else:
        response = RedirectResponse(f"/lti/app?platform={platform.id}#/" + (f"a/{target}" if target else ""),
                                    status_code=303)
    third_party_cookie(response, lti_session_cookie_name(secure), token, int(access.settings.session_hours * 3600))
    return response


def _admitted(access: Any, platform: LtiPlatform,
              facts: Launch) -> tuple[int, str, str, list[tuple[str, str]], str | None]:
    """The launch's writes in one transaction: (user id, session token, deep-linking ticket or "", the
    course's assistants to choose from, the assistant to open). Two first launches at once (the same person,
    course or resource link) both read "missing" and both insert: the loser's unique violation rolls back and
    it tries once more, now finding the winner's rows."""
    for attempt in (1, 2):
        try:
            with access.sessions() as s:
                user_id, course_id = _enter(s, access, platform, facts)
                token = create_session(s, user_id, access.settings, "lti")
                ticket, choices, target = "", [], None
                if facts.message_type == DEEP_LINKING_REQUEST:
                    ticket = deeplink.open_ticket(s, platform.id, facts.deployment_id, user_id, course_id,
                                                  facts.deep_link_return_url or "", facts.deep_link_data)
                    choices = [(a.slug, a.name) for a in s.scalars(select(Assistant).where(
                        Assistant.course_id == course_id, Assistant.disabled.is_(False)).order_by(Assistant.name)).all()]
                else:
                    target = _assistant_of(s, platform.id, course_id, facts)
                s.commit()
                return user_id, token, ticket, choices, target
        except IntegrityError:
            if attempt == 2:
                raise
            log.info("LTI launch met a concurrent first launch; trying again (platform %s)", platform.id)
    raise AssertionError("unreachable")


def lti_admin_group(platform_id: int) -> str:
    """The group that marks an admin role granted by this platform's launches (so a later launch can take it
    back); an admin without it got the role elsewhere and is never demoted by a launch."""
    return f"lti-admins:{platform_id}"


def _role_and_groups(user: User | None, platform: LtiPlatform, facts: Launch,
                     groups: list[str]) -> tuple[str | None, list[str]]:
    """The role to set (None: keep) and the groups after this launch: the platform grants admin only with
    `trust_admins` and a system or institution Administrator role, and takes back only what it granted."""
    marker = lti_admin_group(platform.id)
    granted = platform.trust_admins and is_platform_admin(facts.roles)
    if user is None:
        return ("admin", groups + [marker]) if granted else ("student", groups)
    if granted:
        if user.role != "admin":
            return "admin", (groups if marker in groups else groups + [marker])
        return None, groups  # an admin already: from this platform (marker kept) or elsewhere (no marker)
    if marker in groups:  # the platform's grant ends: no longer an administrator, or no longer trusted
        return ("student" if user.role == "admin" else None), [g for g in groups if g != marker]
    return None, groups


def _enter(s: Session, access: Any, platform: LtiPlatform, facts: Launch) -> tuple[int, int]:
    """The launching person (a pseudonymous user) and their course (made on its first launch)."""
    subject = platforms.subject_of(platform.issuer, facts.subject)
    existing = s.scalar(select(User).where(User.subject == subject))
    groups = list(s.scalars(select(Group.name).join(GroupMember, GroupMember.group_id == Group.id).join(
        User, User.id == GroupMember.user_id).where(User.subject == subject)).all())  # an admin's groups stay
    role, groups = _role_and_groups(existing, platform, facts, groups)
    user, demoted = upsert_user(s, Identity(subject, facts.name, facts.email, role, groups), access)
    if existing is None and facts.locale:
        user.locale = facts.locale
    name = platforms.course_name_of(platform.issuer, facts.context_id or "")
    course = _course_named(s, name)
    if course is None:
        course = Course(name=name, title=facts.context_title)
        s.add(course)
        s.flush()
    elif facts.context_title and course.title != facts.context_title:
        course.title = facts.context_title
    member = s.get(CourseMember, (course.id, user.id))
    if member is None:
        s.add(CourseMember(course_id=course.id, user_id=user.id, role=facts.course_role))
    else:
        member.role = facts.course_role
    s.flush()
    if demoted:
        access.gate.end_streams(user_id=user.id)
    return user.id, course.id


def _course_named(s: Session, name: str) -> Course | None:
    return s.scalar(select(Course).where(Course.name == name))


def _assistant_of(s: Session, platform_id: int, course_id: int, facts: Launch) -> str | None:
    """The assistant this resource link opens: the one it remembers, else the custom parameter
    `assistant=<slug>` (an assistant of this course, or one open to the campus), then remembered."""
    link_id = facts.resource_link_id
    if link_id:
        slug = s.scalar(select(Assistant.slug).join(LtiLink, LtiLink.assistant_id == Assistant.id).where(
            LtiLink.platform_id == platform_id, LtiLink.resource_link_id == link_id))
        if slug is not None:
            return slug
    if not facts.assistant_slug:
        return None
    a = s.scalar(select(Assistant).where(Assistant.slug == facts.assistant_slug, Assistant.disabled.is_(False)))
    if a is None or not (a.course_id == course_id or a.audience == "campus"):
        log.warning("LTI launch: the custom assistant parameter names no assistant of this course (platform %s)",
                    platform_id)
        return None
    if link_id:
        s.add(LtiLink(platform_id=platform_id, resource_link_id=link_id, assistant_id=a.id))
        s.flush()
    return a.slug


async def _models(request: Request, token: str) -> list[str]:
    """Models the teacher may give a new assistant (what the model lists show them)."""
    principal = access_of(request).authn.authenticate(Credential("session", token))
    if principal is None:
        return []
    caller = build_caller(request.scope, principal, access_of(request).settings.trusted_proxies, request_id_of(request.scope))
    generation = generation_of(request)
    records = await asyncio.to_thread(state_of(request).store.list)
    return sorted(r.name for r in generation.visible(caller, generation.with_remote(records)))


# --- deep linking: the teacher's choice -------------------------------------------------------
@router.post("/deeplink")
async def deep_link_answer(request: Request) -> Response:
    access = access_of(request)
    params = await _params(request)
    locale = _locale(request)
    # only the LTI session: a first-party session cookie (same site as the platform) is not the launched person
    token = session_token(request.headers.get("cookie"), is_secure(request, access.settings), only_lti=True)
    principal = access.authn.authenticate(Credential("session", token)) if token else None
    platform_id: int | None = None
    try:
        with access.sessions() as s:
            row = deeplink.peek(s, params.get("ticket"), principal.user_id if principal else None)
            platform = deeplink.platform_of(s, row)
            platform_id = platform.id
            role = s.scalar(select(CourseMember.role).where(CourseMember.course_id == row.course_id,
                                                            CourseMember.user_id == row.user_id))
            if role != "teacher":
                raise LtiError("lti_deep_link_teacher", 403, "deep linking by a non-teacher")
            slug, name, description = params.get("assistant", ""), "", ""
            if slug:
                a = s.scalar(select(Assistant).where(Assistant.slug == slug[:32], Assistant.course_id == row.course_id))
                if a is None:
                    raise LtiError("lti_assistant_missing", 400, "assistant not in the course")
                name, description = a.name, a.description
            elif (new_name := params.get("new_name", "").strip()[:100]):
                assert principal is not None
                model = await _checked_model(request, principal, params.get("new_model", ""))
                now = utcnow()
                a = Assistant(slug=secrets.token_urlsafe(12), course_id=row.course_id, owner_id=row.user_id,
                              name=new_name, description="", model=model,
                              system_prompt=params.get("new_prompt", "")[:20000], welcome_message="",
                              example_questions=[], options={}, audience="course", show_system_prompt=False,
                              disabled=False, created_at=now, updated_at=now)
                s.add(a)
                s.flush()
                slug, name = a.slug, a.name
            else:
                raise LtiError("lti_assistant_missing", 400, "nothing chosen")
            deeplink.close(s, row)
            jwt = deeplink.response_jwt(s, platform, row, base_url(request) + "/lti/launch", slug, name, description)
            return_url, origins = row.return_url, platforms.origins_of(platform)
            s.commit()
    except LtiError as exc:
        return _refused(request, exc, "deep linking", platform_id, locale)
    log.info("LTI deep link answered (platform %s)", platform_id)
    return lti_pages.auto_post(return_url, {"JWT": jwt}, locale, origins, [platforms.origin(return_url)])


async def _checked_model(request: Request, principal: Any, name: str) -> str:
    caller = build_caller(request.scope, principal, access_of(request).settings.trusted_proxies, request_id_of(request.scope))
    try:
        return generation_of(request).saved_name(caller, name[:255] or access_of(request).settings.default_model)
    except EngineError:
        raise LtiError("lti_assistant_missing", 400, "model not available") from None


# --- keys, registration, the framed web interface ----------------------------------------------
@router.get("/jwks")
def jwks(request: Request) -> Response:
    with access_of(request).sessions() as s:
        out = keys.public_jwks(s)
        s.commit()
    return JSONResponse(out, headers={"Cache-Control": "public, max-age=300"})


@router.get("/register")
async def register(request: Request, token: str = "", openid_configuration: str = "",
                   registration_token: str = "") -> Response:
    access = access_of(request)
    locale = _locale(request)
    try:
        with access.sessions() as s:
            registration.check_token(s, token)  # nothing is fetched for someone without a registration link
        spec = await registration.register(openid_configuration, registration_token, base_url(request),
                                           list(access.settings.lti_allow_hosts))
        with access.sessions() as s:
            registration.use_token(s, token)  # spent only when the registration succeeded (same transaction)
            platform = platforms.add(s, spec)
            name, origins, platform_id = platform.name or platform.issuer, platforms.origins_of(platform), platform.id
            s.commit()
    except LtiError as exc:
        return _refused(request, exc, "registration", None, locale)
    log.info("LTI platform registered dynamically (platform %s)", platform_id)
    return lti_pages.registered(name, locale, origins)
