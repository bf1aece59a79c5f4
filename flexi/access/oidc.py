"""OpenID Connect sign-in (authorization code flow with PKCE, state and nonce).

Works with any standard provider: Keycloak, or Shibboleth behind an OIDC proxy
such as SATOSA. The provider is found through its discovery document; ID tokens
are verified against its published keys (JWKS, refreshed when an unknown key id
appears) with joserfc: signature, issuer, audience, expiry and nonce.

Roles and groups come from claims: `FLEXI_OIDC_ROLE_CLAIM` (a dotted path such
as `realm_access.roles`; a list or a string) mapped through `FLEXI_OIDC_ROLE_MAP`
(values that already are role names map to themselves); if several roles map,
the most privileged wins (admin > teacher > researcher > service > student).
A claim value `admin` is not trusted by name: an IdP role called "admin" usually
means something else (a realm's own admins, a department's), so Flexi admin comes
only from an explicit role-map entry (or FLEXI_ADMINS). When the claims name no
role, a new user gets `FLEXI_OIDC_DEFAULT_ROLE` and an existing one keeps the
role an admin gave them. Groups are replaced by exactly
the claimed ones on every sign-in.

A sign-in is bound to the browser that started it (RFC 6749 §10.12): `/auth/login`
gives the browser a short-lived random pre-auth cookie, and only the SHA-256 of it is
kept with the pending `state`; a callback URL opened in another browser (a stolen or
planted one, login CSRF) finds no matching cookie and is refused. Pending sign-ins are
bounded per client address and in total, evicting the oldest: a flood of `/auth/login`
from one address costs only that address its own sign-ins. The discovery document must
name the configured issuer; an ID token with several audiences must name Flexi in `azp`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from flexi.config import Settings
from flexi.db.models import ROLES

PENDING_SECONDS = 600
MAX_PENDING_PER_CLIENT = 200  # sign-ins one address (or IPv6 /64) may have open; a campus NAT is many people
MAX_PENDING = 50_000  # in total (memory bound): beyond it the oldest pending sign-in is forgotten
BROWSER_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
ROLE_RANK = ("student", "service", "researcher", "teacher", "admin")  # ascending privilege
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
CLOCK_SKEW = 60
log = logging.getLogger("flexi.oidc")


class OidcError(Exception):
    """status: 400 (bad request/state), 401 (token not acceptable), 502 (provider unreachable or broken)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Pending:
    nonce: str
    verifier: str
    next_path: str
    redirect_uri: str
    expires: float
    client: str = ""  # whose sign-in this is, for the per-client bound
    binding: str = ""  # SHA-256 of the browser's pre-auth cookie


def new_browser_secret(existing: str | None) -> str:
    """The pre-auth cookie's value: the browser's current one if well formed (two tabs signing
    in at once both stay valid), else a new random one."""
    return existing if existing and BROWSER_SECRET.fullmatch(existing) else secrets.token_urlsafe(32)


def _binding(browser_secret: str) -> str:
    return hashlib.sha256(b"flexi-signin\x00" + browser_secret.encode()).hexdigest()


class PendingSignIns:
    """Sign-ins between `/auth/login` and `/auth/callback`, bounded per client and in total.

    Both bounds evict the oldest entry instead of refusing new sign-ins: a client that floods
    loses its own oldest attempts, and the total bound (memory) drops the oldest overall.
    """

    def __init__(self, per_client: int = MAX_PENDING_PER_CLIENT, total: int = MAX_PENDING) -> None:
        self.per_client, self.total = per_client, total
        self._all: OrderedDict[str, Pending] = OrderedDict()  # in order of creation = of expiry
        self._by_client: dict[str, OrderedDict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def count(self, client: str) -> int:
        return len(self._by_client.get(client, ()))

    def add(self, state: str, pending: Pending) -> None:
        now = time.monotonic()
        while self._all and next(iter(self._all.values())).expires <= now:
            self._drop(next(iter(self._all)))
        mine = self._by_client.setdefault(pending.client, OrderedDict())
        while len(mine) >= self.per_client:
            self._drop(next(iter(mine)))
            mine = self._by_client.setdefault(pending.client, OrderedDict())
        while len(self._all) >= self.total:
            self._drop(next(iter(self._all)))
        self._all[state] = pending
        self._by_client.setdefault(pending.client, OrderedDict())[state] = None

    def get(self, state: str) -> Pending | None:
        pending = self._all.get(state)
        return pending if pending is not None and pending.expires > time.monotonic() else None

    def pop(self, state: str) -> None:
        self._drop(state)

    def _drop(self, state: str) -> None:
        pending = self._all.pop(state, None)
        if pending is None:
            return
        mine = self._by_client.get(pending.client)
        if mine is not None:
            mine.pop(state, None)
            if not mine:
                del self._by_client[pending.client]


@dataclass(frozen=True)
class Identity:
    subject: str
    name: str | None
    email: str | None
    role: str | None  # None: the claims name no role
    groups: list[str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def safe_next(value: str | None) -> str:
    """Only local paths: "/x", never "//host", "/\\host", "https://…" (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or any(ord(c) < 32 for c in value):
        return "/"
    return value[:2000]


def claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def identity_from_claims(claims: dict[str, Any], settings: Settings) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise OidcError("the ID token has no usable subject", 401)
    mapped = []
    for value in _strings(claim(claims, settings.oidc_role_claim)):
        # a value that is a role's name maps to it, except admin: that needs an explicit map entry
        role = settings.oidc_role_map.get(value) or (value if value in ROLES and value != "admin" else None)
        if role in ROLES:
            mapped.append(role)
    role = max(mapped, key=ROLE_RANK.index) if mapped else None
    groups = sorted({g.strip()[:100] for g in _strings(claim(claims, settings.oidc_group_claim)) if g.strip()})
    name = claims.get("name") if isinstance(claims.get("name"), str) else None
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    return Identity(sub, name[:255] if name else None, email[:320] if email else None, role, groups)


class OidcClient:
    def __init__(self, settings: Settings) -> None:
        if not (settings.oidc_issuer and settings.oidc_client_id):
            raise OidcError("single sign-on is not configured on this server (FLEXI_OIDC_ISSUER, FLEXI_OIDC_CLIENT_ID)", 404)
        self.settings = settings
        self.issuer = settings.oidc_issuer.rstrip("/")
        self._meta: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._pending = PendingSignIns()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.get(url)
                r.raise_for_status()
                data = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the sign-in provider is not reachable or answered badly ({type(exc).__name__})", 502) from None
        if not isinstance(data, dict):
            raise OidcError("the sign-in provider answered badly", 502)
        return data

    async def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            meta = await self._get_json(self.issuer + "/.well-known/openid-configuration")
            for field in ("authorization_endpoint", "token_endpoint", "jwks_uri", "issuer"):
                if not isinstance(meta.get(field), str):
                    raise OidcError(f"the provider's discovery document lacks {field}", 502)
            if meta["issuer"].rstrip("/") != self.issuer:
                # OpenID Connect Discovery §4.3: a document naming another issuer is not this provider's
                # (a misconfiguration, or someone answering in its place); its tokens would check against it
                log.error("single sign-on refused: the discovery document at %s names issuer %r, but "
                          "FLEXI_OIDC_ISSUER is %r", self.issuer, meta["issuer"], self.settings.oidc_issuer)
                raise OidcError("single sign-on is refused: the provider's discovery document names another issuer "
                                "than FLEXI_OIDC_ISSUER (see the server log)", 502)
            self._meta = meta
        return self._meta

    async def _keyset(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            data = await self._get_json((await self.metadata())["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise OidcError("the provider's signing keys could not be read", 502) from None
        return self._keys

    # --- step 1 -----------------------------------------------------------------------
    async def login_url(self, redirect_uri: str, next_path: str | None, client: str, browser_secret: str) -> str:
        """The provider's URL for a new sign-in by `client` (its address key), bound to the browser
        that holds `browser_secret` in its pre-auth cookie."""
        meta = await self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        self._pending.add(state, Pending(nonce, verifier, safe_next(next_path), redirect_uri,
                                         time.monotonic() + PENDING_SECONDS, client, _binding(browser_secret)))
        query = {"response_type": "code", "client_id": self.settings.oidc_client_id, "redirect_uri": redirect_uri,
                 "scope": self.settings.oidc_scopes, "state": state, "nonce": nonce,
                 "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256"}
        endpoint = meta["authorization_endpoint"]
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query)

    # --- step 2 -----------------------------------------------------------------------
    async def finish(self, state: str | None, code: str | None, browser_secret: str | None) -> tuple[Identity, str]:
        """Exchange the code, verify the ID token; returns the identity and where to go next.
        `browser_secret` is the pre-auth cookie of the browser that brought the callback."""
        pending = self._pending.get(state or "")
        if pending is None:
            raise OidcError("unknown or expired sign-in attempt (state); please start again", 400)
        if not browser_secret or not secrets.compare_digest(_binding(browser_secret), pending.binding):
            # someone else's callback URL: left pending, so the browser it belongs to can still finish
            raise OidcError("this sign-in was not started in this browser (state does not belong to it); "
                            "please start again from the sign-in page", 400)
        self._pending.pop(state or "")
        if not code:
            raise OidcError("the provider returned no authorization code", 400)
        meta = await self.metadata()
        try:
            async with httpx.AsyncClient(timeout=15) as client:
                r = await client.post(meta["token_endpoint"], data={
                    "grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_uri,
                    "code_verifier": pending.verifier, "client_id": self.settings.oidc_client_id},
                    auth=(self.settings.oidc_client_id or "", self.settings.oidc_client_secret or ""))
        except httpx.HTTPError:
            raise OidcError("the sign-in provider is not reachable", 502) from None
        if r.status_code != 200:
            raise OidcError("the sign-in provider refused the authorization code", 401)
        try:
            id_token = r.json()["id_token"]
            assert isinstance(id_token, str)
        except (ValueError, KeyError, AssertionError, TypeError):
            raise OidcError("the sign-in provider sent no ID token", 502) from None
        claims = await self._verify(id_token, meta["issuer"], pending.nonce)
        return identity_from_claims(claims, self.settings), pending.next_path

    async def _verify(self, id_token: str, issuer: str, nonce: str) -> dict[str, Any]:
        keys = await self._keyset()
        try:
            token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
        except JoseError:
            keys = await self._keyset(refresh=True)  # the provider may have rotated its keys
            try:
                token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            except (JoseError, ValueError):
                raise OidcError("the ID token's signature is not valid", 401) from None
        except ValueError:
            raise OidcError("the ID token is malformed", 401) from None
        claims = dict(token.claims)
        now = time.time()
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        azp = claims.get("azp")
        checks = [
            (claims.get("iss") == issuer, "issuer"),
            (self.settings.oidc_client_id in audiences, "audience"),
            # OIDC Core §3.1.3.7: with several audiences the token must say it was issued to us (azp),
            # and an azp naming another client means the token is another client's
            (azp == self.settings.oidc_client_id if len(audiences) > 1 else azp in (None, self.settings.oidc_client_id),
             "authorized party (azp)"),
            (isinstance(claims.get("exp"), (int, float)) and claims["exp"] > now - CLOCK_SKEW, "expiry"),
            (not isinstance(claims.get("iat"), (int, float)) or claims["iat"] < now + CLOCK_SKEW, "issue time"),
            (isinstance(claims.get("nonce"), str) and secrets.compare_digest(claims["nonce"], nonce), "nonce"),
        ]
        for ok, what in checks:
            if not ok:
                raise OidcError(f"the ID token was rejected ({what} does not match)", 401)
        return claims
