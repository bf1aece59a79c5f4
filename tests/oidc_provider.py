"""A small but real OpenID Connect provider for the test suite.

Runs as its own process over HTTP (`python -m tests.oidc_provider PORT`) and
implements what Flexi's sign-in uses: discovery, JWKS (RS256 keys generated at
start), an authorization endpoint with automatic consent, and a token endpoint
that checks the client secret, the redirect URI and PKCE (S256) and issues
signed ID tokens. Tokens are really signed and really verified by Flexi; the
provider is not a mock of Flexi's checks.

Control (tests only): `POST /_test/next` with `{"claims": {...}, "misbehave": ...}`
chooses who signs in next and optionally makes the provider cheat
(`other_key`, `wrong_audience`, `wrong_nonce`, `expired`, `wrong_issuer`).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "flexi-test"
CLIENT_SECRET = "s3cret-for-tests"


def make_app(issuer: str) -> Starlette:
    key = RSAKey.generate_key(2048, parameters={"kid": "main", "use": "sig", "alg": "RS256"})
    rogue = RSAKey.generate_key(2048, parameters={"kid": "main", "use": "sig", "alg": "RS256"})
    codes: dict[str, dict[str, Any]] = {}
    plan: dict[str, Any] = {"claims": {"sub": "default-user"}, "misbehave": None}

    async def discovery(request: Request) -> Response:
        return JSONResponse({
            "issuer": issuer, "authorization_endpoint": issuer + "/authorize", "token_endpoint": issuer + "/token",
            "jwks_uri": issuer + "/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"]})

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [key.as_dict(private=False)]})

    async def set_next(request: Request) -> Response:
        plan.update(await request.json())
        return JSONResponse({"ok": True})

    async def authorize(request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        codes[code] = {"redirect_uri": q["redirect_uri"], "nonce": q.get("nonce"), "challenge": q["code_challenge"],
                       "claims": dict(plan["claims"]), "misbehave": plan.get("misbehave")}
        return RedirectResponse(q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")}), 302)

    async def token(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if auth != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}  # urlencoded body
        grant = codes.pop(str(form.get("code")), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        now = int(time.time())
        bad = grant["misbehave"]
        claims = {"iss": issuer if bad != "wrong_issuer" else issuer + "/other",
                  "aud": CLIENT_ID if bad != "wrong_audience" else "someone-else",
                  "iat": now, "exp": now + 300 if bad != "expired" else now - 3600,
                  "nonce": grant["nonce"] if bad != "wrong_nonce" else "forged", **grant["claims"]}
        signer = rogue if bad == "other_key" else key
        id_token = jwt.encode({"alg": "RS256", "kid": "main"}, claims, signer)
        return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                             "id_token": id_token})

    return Starlette(routes=[
        Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks),
        Route("/authorize", authorize), Route("/token", token, methods=["POST"]),
        Route("/_test/next", set_next, methods=["POST"]),
    ])


if __name__ == "__main__":
    port = int(sys.argv[1])
    uvicorn.run(make_app(f"http://127.0.0.1:{port}"), host="127.0.0.1", port=port, log_level="warning")
