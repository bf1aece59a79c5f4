"""An OpenID Connect provider for the test suite, in its own process over HTTP
(`python -m tests.oidc_provider PORT`).

Sign-ins are served by IdentityPython's **pyop** (the provider library inside
SATOSA, the OIDC proxy universities put in front of Shibboleth): it validates
the authorization request and the registered client, runs the code flow with
PKCE, authenticates the client and signs the ID token. Only consent is
automatic (the user is chosen by the test) and a client's redirect URI is
registered on first use.

To prove Flexi refuses bad tokens, `POST /_test/next` with `"misbehave"` makes
the next sign-in go through a deliberately broken path instead, which signs
tokens with joserfc: with a foreign key (`other_key`), for another audience,
with a wrong nonce or issuer, or already expired.
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


def _pyop_provider(issuer: str, users: dict[str, dict[str, Any]]) -> Any:
    from Cryptodome.PublicKey import RSA
    from jwkest.jwk import RSAKey as JwkestRSAKey
    from pyop.authz_state import AuthorizationState
    from pyop.provider import Provider
    from pyop.subject_identifier import HashBasedSubjectIdentifierFactory
    from pyop.userinfo import Userinfo

    configuration = {
        "issuer": issuer, "authorization_endpoint": issuer + "/authorize", "token_endpoint": issuer + "/token",
        "jwks_uri": issuer + "/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "profile", "email"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"], "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code"], "claims_parameter_supported": True,
    }
    clients = {CLIENT_ID: {"client_secret": CLIENT_SECRET, "redirect_uris": [], "response_types": ["code"],
                           "token_endpoint_auth_method": "client_secret_basic"}}
    return Provider(JwkestRSAKey(key=RSA.generate(2048), alg="RS256", kid="pyop"), configuration,
                    AuthorizationState(HashBasedSubjectIdentifierFactory("test-salt")), clients, Userinfo(users))


def make_app(issuer: str) -> Starlette:
    key = RSAKey.generate_key(2048, parameters={"kid": "main", "use": "sig", "alg": "RS256"})
    rogue = RSAKey.generate_key(2048, parameters={"kid": "main", "use": "sig", "alg": "RS256"})
    codes: dict[str, dict[str, Any]] = {}
    plan: dict[str, Any] = {"claims": {"sub": "default-user"}, "misbehave": None}
    users: dict[str, dict[str, Any]] = {}
    provider = _pyop_provider(issuer, users)

    async def discovery(request: Request) -> Response:
        return Response(provider.provider_configuration.to_json(), media_type="application/json")

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [*provider.jwks["keys"], key.as_dict(private=False)]})

    async def set_next(request: Request) -> Response:
        plan.update(await request.json())
        return JSONResponse({"ok": True})

    async def authorize(request: Request) -> Response:
        if not plan.get("misbehave"):
            return pyop_authorize(request)
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
        raw = (await request.body()).decode()
        form = {k: v[0] for k, v in parse_qs(raw).items()}  # urlencoded body
        if str(form.get("code")) not in codes:
            return pyop_token(raw, {"Authorization": request.headers.get("authorization", "")})
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

    def pyop_authorize(request: Request) -> Response:
        from pyop.exceptions import InvalidAuthenticationRequest

        redirect_uri = request.query_params.get("redirect_uri", "")
        registered = provider.clients[CLIENT_ID]["redirect_uris"]
        if redirect_uri and redirect_uri not in registered:
            registered.append(redirect_uri)
        try:
            auth_req = provider.parse_authentication_request(request.url.query, dict(request.headers))
        except InvalidAuthenticationRequest as exc:
            return JSONResponse({"error": "invalid_request", "error_description": str(exc)}, status_code=400)
        claims = dict(plan["claims"])
        user_id = claims["sub"]
        users[user_id] = claims
        response = provider.authorize(auth_req, user_id)
        return RedirectResponse(response.request(auth_req["redirect_uri"], False), 302)

    def pyop_token(body: str, headers: dict[str, str]) -> Response:
        from pyop.exceptions import InvalidClientAuthentication, OAuthError

        def extra(user_id: str, client_id: str) -> dict[str, Any]:
            return {k: v for k, v in users.get(user_id, {}).items() if k != "sub"}

        try:
            response = provider.handle_token_request(body, headers, extra)
        except InvalidClientAuthentication:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        except OAuthError as exc:
            return JSONResponse({"error": exc.oauth_error, "error_description": str(exc)}, status_code=400)
        return Response(response.to_json(), media_type="application/json")

    return Starlette(routes=[
        Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks),
        Route("/authorize", authorize), Route("/token", token, methods=["POST"]),
        Route("/_test/next", set_next, methods=["POST"]),
    ])


def write_self_signed(cert_path: str, key_path: str) -> None:
    """A certificate for 127.0.0.1 (pyop, like real providers, insists on an https issuer);
    clients trust it through SSL_CERT_FILE / verify=cert_path."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flexi test idp")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(private, hashes.SHA256()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))


if __name__ == "__main__":
    port, cert_file, key_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    write_self_signed(cert_file, key_file)
    uvicorn.run(make_app(f"https://127.0.0.1:{port}"), host="127.0.0.1", port=port, log_level="warning",
                ssl_certfile=cert_file, ssl_keyfile=key_file)
