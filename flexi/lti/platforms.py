"""The platforms Flexi trusts: registered by an administrator (`flexi lti add-platform`,
`/admin/lti/platforms`) or by dynamic registration (`/lti/register`). A platform is its issuer plus the
client id it gave Flexi; one issuer may have several (a Moodle site registering Flexi twice)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from flexi.db.models import LtiPlatform, iso_z
from flexi.lti.errors import LtiError


@dataclass(frozen=True)
class PlatformSpec:
    issuer: str
    client_id: str
    auth_url: str
    jwks_url: str
    token_url: str = ""
    deployment_ids: tuple[str, ...] = ()
    name: str = ""
    trust_admins: bool = False
    registered_by: str = "admin"


def check_url(url: str, what: str) -> str:
    """Only absolute http(s) URLs without credentials (they are fetched, or the browser is sent there)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password \
            or "\\" in url or any(ord(c) < 33 for c in url.strip()):
        raise LtiError("lti_bad_url", 400, "bad url", what=what)
    return url.strip()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def add(s: Session, spec: PlatformSpec) -> LtiPlatform:
    """Register a platform, or add deployment ids to the one with this issuer and client id."""
    for url, what in ((spec.auth_url, "auth-url"), (spec.jwks_url, "jwks-url")):
        check_url(url, what)
    if spec.token_url:
        check_url(spec.token_url, "token-url")
    if not spec.issuer.strip() or not spec.client_id.strip() or len(spec.issuer) > 255 or len(spec.client_id) > 255:
        raise LtiError("lti_bad_platform", 400, "bad platform")
    deployments = [d.strip() for d in spec.deployment_ids if d.strip()]
    if any(len(d) > 255 for d in deployments):
        raise LtiError("lti_bad_platform", 400, "bad platform")
    row = s.scalar(select(LtiPlatform).where(LtiPlatform.issuer == spec.issuer.strip(),
                                             LtiPlatform.client_id == spec.client_id.strip()))
    if row is None:
        row = LtiPlatform(issuer=spec.issuer.strip(), client_id=spec.client_id.strip(), deployment_ids=[])
        s.add(row)
    row.name, row.auth_url, row.jwks_url, row.token_url = spec.name[:255], spec.auth_url, spec.jwks_url, spec.token_url
    row.trust_admins, row.registered_by = spec.trust_admins, spec.registered_by
    row.deployment_ids = sorted(set(row.deployment_ids or []) | set(deployments))
    s.flush()
    return row


def find(s: Session, issuer: str, client_id: str | None) -> LtiPlatform | None:
    """The platform of a login initiation: by issuer and client id; by issuer alone if it has only one."""
    rows = s.scalars(select(LtiPlatform).where(LtiPlatform.issuer == issuer)).all()
    if client_id:
        return next((r for r in rows if r.client_id == client_id), None)
    return rows[0] if len(rows) == 1 else None


def all_origins(s: Session) -> list[str]:
    """The origins of every registered platform (who may frame Flexi's LTI pages)."""
    out: set[str] = set()
    for issuer, auth_url in s.execute(select(LtiPlatform.issuer, LtiPlatform.auth_url)).all():
        for url in (issuer, auth_url):
            if url.startswith(("http://", "https://")):
                out.add(origin(url))
    return sorted(out)


def origins_of(row: LtiPlatform) -> list[str]:
    return sorted({origin(u) for u in (row.issuer, row.auth_url) if u.startswith(("http://", "https://"))})


def subject_of(issuer: str, sub: str) -> str:
    """The Flexi user subject of an LTI user: namespaced by the issuer, so two platforms' user 7 differ."""
    tag = hashlib.sha256(issuer.encode()).hexdigest()[:16]
    value = f"lti:{tag}:{sub}"
    return value if len(value) <= 255 else f"lti:{tag}:#{hashlib.sha256(sub.encode()).hexdigest()}"


def course_name_of(issuer: str, context_id: str) -> str:
    """The Flexi course name of an LTI context (a Moodle course), stable per platform and context."""
    return "lti-" + hashlib.sha256(f"{issuer}\x00{context_id}".encode()).hexdigest()[:24]


def as_dict(row: LtiPlatform) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "issuer": row.issuer, "client_id": row.client_id,
            "deployment_ids": list(row.deployment_ids or []), "auth_url": row.auth_url, "token_url": row.token_url,
            "jwks_url": row.jwks_url, "trust_admins": row.trust_admins, "registered_by": row.registered_by,
            "created_at": iso_z(row.created_at) if row.created_at else None}
