"""Find the credential in a request, the same way for every header form.

Accepted (issue 4): `Authorization: Bearer KEY`, `x-api-key: KEY`, `api-key:
KEY` (Azure-style, Moodle plugins) and `Authorization: Basic base64(user:KEY)`
(Moodle's Ollama provider; the user name is ignored, the password is the key).
All four produce the same `Credential`, so every later decision is identical
whichever header carried it. Two headers with different values are refused
rather than guessed between (a restriction checked on one header could
otherwise be bypassed with the other, cf. Open WebUI CVE-2026-45339).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

SESSION_COOKIE = "flexi_session"
# Behind HTTPS the session cookie carries the __Host- prefix: browsers refuse such a cookie from a sibling
# subdomain (`Domain=uni.example`), so nobody can plant their own session in a victim's browser (session
# fixation into the attacker's account). Plain http (a laptop) cannot have it and keeps the plain name.
SECURE_SESSION_COOKIE = "__Host-" + SESSION_COOKIE


# The LTI session (flexi.campus.lti): a launch inside a platform's iframe is a third-party context, where
# browsers do not send the SameSite=Lax session cookie. So a launch sets this one instead: SameSite=None,
# Secure, Partitioned (CHIPS: kept apart per top-level site, so it exists only inside that platform's
# frames). It counts only when the first-party session cookie is absent. Cross-site requests still need
# the CSRF header (the access middleware), and foreign origins are refused by the request guard.
LTI_SESSION_COOKIE = "flexi_lti_session"
SECURE_LTI_SESSION_COOKIE = "__Host-" + LTI_SESSION_COOKIE
# The web app started from /lti/app sends this header on every call: then only the LTI session cookie counts.
# When Moodle and Flexi share a site, the browser sends the first-party (SameSite=Lax) cookie inside the
# platform's iframe too; without the header the framed page would act as that first-party account. The
# header only ever narrows the choice to the LTI cookie (no LTI cookie → no session), it never adds one.
LTI_HEADER = "x-flexi-lti"


def session_cookie_name(secure: bool) -> str:
    return SECURE_SESSION_COOKIE if secure else SESSION_COOKIE


def lti_session_cookie_name(secure: bool) -> str:
    return SECURE_LTI_SESSION_COOKIE if secure else LTI_SESSION_COOKIE
MAX_CREDENTIAL_CHARS = 512


class CredentialError(Exception):
    """A credential header is present but unusable (malformed or conflicting)."""


@dataclass(frozen=True)
class Credential:
    kind: str  # "key" | "session"
    value: str = ""


def _basic_password(value: str) -> str:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CredentialError("malformed Basic credentials") from None
    _user, sep, password = decoded.partition(":")
    if not sep:
        raise CredentialError("malformed Basic credentials")
    return password


def _from_authorization(value: str) -> str:
    scheme, _, rest = value.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return rest.strip()
    if scheme == "basic":
        return _basic_password(rest)
    raise CredentialError("unsupported Authorization scheme; use Bearer or Basic")


def lti_only(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the request comes from the LTI shell (the `X-Flexi-LTI` header, any value)."""
    return any(name.lower() == LTI_HEADER.encode() for name, _ in headers)


def extract(headers: Iterable[tuple[bytes, bytes]], cookie_header: str | None = None,
            secure: bool = False) -> Credential | None:
    """The one credential of a request, or None if it carries none.

    API-key headers win over a session cookie (a script with a key in a browser
    tab is the script). From the LTI shell (`X-Flexi-LTI`), only the LTI session cookie counts."""
    headers = list(headers)  # read twice
    found: list[str] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name not in ("authorization", "x-api-key", "api-key"):
            continue
        value = raw_value.decode("latin-1")
        if len(value) > MAX_CREDENTIAL_CHARS:
            raise CredentialError("credential too long")
        secret = _from_authorization(value) if name == "authorization" else value.strip()
        if not secret:
            raise CredentialError("empty credential")
        found.append(secret)
    if found:
        if len(set(found)) > 1:
            raise CredentialError("conflicting credentials in several headers")
        return Credential("key", found[0])
    token = session_token(cookie_header, secure, lti_only(headers))
    return Credential("session", token) if token else None


def session_token(cookie_header: str | None, secure: bool = False, only_lti: bool = False) -> str | None:
    """The session cookie's token; behind HTTPS only the __Host- cookie counts (a plain one may be planted).
    Without a first-party session cookie, the LTI session cookie of a launch inside a platform counts;
    `only_lti` (the LTI shell's requests, the /lti/ routes): the LTI session cookie alone counts."""
    if not cookie_header:
        return None
    wanted, lti = session_cookie_name(secure), lti_session_cookie_name(secure)
    found = None
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == wanted and value and not only_lti:
            return value[:MAX_CREDENTIAL_CHARS]
        if name == lti and value and found is None:
            found = value[:MAX_CREDENTIAL_CHARS]
    return found
