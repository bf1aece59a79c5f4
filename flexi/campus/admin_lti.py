"""`/admin/lti/…`: the LTI platforms Flexi trusts, one-time dynamic-registration links, and Flexi's LTI
signing keys. Used by `flexi lti …` (flexi/cli/lti.py) and by admins directly."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from flexi import i18n
from flexi.campus.admin_common import AdminRoute, require_admin, transaction
from flexi.campus.auth_routes import base_url
from flexi.db.models import LtiPlatform, iso_z
from flexi.engine.types import EngineError
from flexi.http.caller import caller_of
from flexi.lti import keys, platforms, registration
from flexi.lti.errors import LtiError

router = APIRouter(prefix="/admin/lti", tags=["admin"], route_class=AdminRoute, dependencies=[Depends(require_admin)])


class PlatformIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(min_length=1, max_length=255)
    client_id: str = Field(min_length=1, max_length=255)
    deployment_ids: list[str] = Field(default_factory=list, max_length=100)
    auth_url: str = Field(min_length=1, max_length=2000)
    token_url: str = Field("", max_length=2000)
    jwks_url: str = Field(min_length=1, max_length=2000)
    name: str = Field("", max_length=255)
    trust_admins: bool = False


class RegistrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: int = Field(registration.TOKEN_HOURS, ge=1, le=24 * 14)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retire: bool = False


def _http(exc: LtiError, request: Request) -> EngineError:
    return EngineError(i18n.text(exc.key, caller_of(request).locale, **exc.values), exc.status, "invalid_request")


@router.get("/platforms", summary="LTI platforms that may launch Flexi")
def list_platforms(request: Request) -> dict[str, Any]:
    with transaction(request, caller_of(request).locale) as s:
        rows = s.query(LtiPlatform).order_by(LtiPlatform.id).all()
        return {"platforms": [platforms.as_dict(r) for r in rows]}


@router.post("/platforms", status_code=201, summary="Register an LTI platform by hand (or add deployment ids)")
def add_platform(request: Request, body: PlatformIn) -> dict[str, Any]:
    with transaction(request, caller_of(request).locale) as s:
        try:
            row = platforms.add(s, platforms.PlatformSpec(**body.model_dump(exclude={"deployment_ids"}),
                                                          deployment_ids=tuple(body.deployment_ids)))
        except LtiError as exc:
            raise _http(exc, request) from None
        return platforms.as_dict(row)


@router.delete("/platforms/{platform_id}", status_code=204, summary="Remove an LTI platform (its launches stop)")
def remove_platform(request: Request, platform_id: int) -> Response:
    with transaction(request, caller_of(request).locale) as s:
        row = s.get(LtiPlatform, platform_id) if 0 < platform_id < 2**31 else None
        if row is None:
            raise EngineError(f"no LTI platform {platform_id}", 404, "not_found")
        s.delete(row)
    return Response(status_code=204)


@router.post("/registrations", status_code=201, summary="A one-time URL for Moodle's 'register a tool by URL'")
def registration_url(request: Request, body: RegistrationIn | None = None) -> dict[str, Any]:
    with transaction(request, caller_of(request).locale) as s:
        token, expires = registration.new_token(s, (body or RegistrationIn()).hours)
    return {"url": f"{base_url(request)}/lti/register?token={token}", "expires_at": iso_z(expires)}


@router.post("/keys/rotate", summary="A new LTI signing key (older ones stay published unless retired)")
def rotate_key(request: Request, body: RotateIn | None = None) -> dict[str, Any]:
    with transaction(request, caller_of(request).locale) as s:
        kid = keys.rotate(s, retire=(body or RotateIn()).retire)
    return {"kid": kid}
