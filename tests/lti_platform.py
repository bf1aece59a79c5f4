"""A real LTI 1.3 platform for the tests: `lti1p3platform` (PyPI) behind a small FastAPI app, in a thread.

What Moodle does, the library does here: the OIDC login initiation (`OIDCLoginAbstract`), the
authentication response that signs the id_token with the platform's key and auto-posts it to the tool
(`MessageLaunchAbstract`, `LTIAdvantageMessageLaunchAbstract` for deep linking), its JWKS, and the check of
the tool's deep-linking answer against the tool's JWKS (`validate_deeplinking_resp`). The library has no
dynamic registration, so its two endpoints (openid-configuration, registration) are written here after
the IMS spec, as Moodle serves them. `Browser` plays the person's browser: cookies per host, redirects,
and auto-submitted forms, so tests can move a state to "another browser".
"""

from __future__ import annotations

import base64
import html
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from lti1p3platform.framework.fastapi.message_launch import FastapiMessageLaunch
from lti1p3platform.framework.fastapi.oidc_login import FastAPIOIDCLogin
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.registration import Registration

LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
ADMINISTRATOR = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"
CLIENT_ID = "flexi-client-1"
DEPLOYMENT_ID = "deployment-1"


def rsa_pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PlatformConf(LTI1P3PlatformConfAbstract):
    """The platform's registration of Flexi (what Moodle stores for an external tool)."""

    def init_platform_config(self, **kwargs: Any) -> None:
        self.settings = kwargs

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        k = self.settings
        return (Registration().set_iss(k["iss"]).set_client_id(k["client_id"]).set_deployment_id(k["deployment_id"])
                .set_oidc_login_url(k["tool"] + "/lti/login").set_launch_url(k["tool"] + "/lti/launch")
                .set_deeplink_launch_url(k["tool"] + "/lti/launch").set_platform_public_key(k["public"])
                .set_platform_private_key(k["private"]).set_tool_key_set_url(k["tool"] + "/lti/jwks"))


class Login(FastAPIOIDCLogin):
    """The login initiation; the launch's claims travel in `lti_message_hint` (Moodle puts its own ids there)."""

    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = kwargs["hint"]


class Launch(LTIAdvantageMessageLaunchAbstract, FastapiMessageLaunch):
    """The authentication response: the launch's claims come from `lti_message_hint` (set at /start)."""

    def prepare_launch(self, preflight_response: dict[str, Any]) -> None:
        hint = json.loads(base64.urlsafe_b64decode(preflight_response["lti_message_hint"]))
        self.set_user_data(hint["user"], hint["roles"], full_name=hint.get("name"), email_address=hint.get("email"))
        self.set_launch_context_claim(hint["context"], context_title=hint.get("context_title"))
        if hint.get("link"):
            self.set_resource_link_claim(hint["link"], title="Kursassistent")
        if hint.get("custom"):
            self.set_custom_parameters_claim(hint["custom"])
        self.set_extra_claims({"locale": hint.get("locale", "de")})
        self.set_launch_presentation_claim(document_target="iframe")
        if hint.get("deep_link"):
            self.set_dl(self.platform.url + "/deeplink-return", title="Flexi", accept_types={"ltiResourceLink"},
                        extra_data={"opaque": "moodle-data-1"})
        if hint.get("extra"):
            self.set_extra_claims(hint["extra"])


@dataclass
class Platform:
    """A running platform: its URL, Flexi's URL, and what arrived at it (deep-linking answers, registrations)."""

    url: str
    tool: str
    private: str
    public: str
    client_id: str = CLIENT_ID
    deployment_id: str = DEPLOYMENT_ID
    content_items: list[list[dict[str, Any]]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    frame_html: str = ""
    server: Any = None

    def conf(self) -> PlatformConf:
        return PlatformConf(iss=self.url, client_id=self.client_id, deployment_id=self.deployment_id, tool=self.tool,
                            public=self.public, private=self.private)

    def start_url(self, user: str, roles: list[str], context: str = "course-1", link: str | None = "link-1",
                  **extra: Any) -> str:
        hint = base64.urlsafe_b64encode(json.dumps({"user": user, "roles": roles, "context": context, "link": link,
                                                    **extra}).encode()).decode()
        return f"{self.url}/start?user={user}&hint={hint}"

    def sign(self, claims: dict[str, Any], private: str | None = None, expiration: int | None = 300) -> str:
        """An id_token signed by this platform's key (or `private`), with its kid."""
        registration = self.conf().get_registration()
        if private is not None:
            return Registration.encode_and_sign(dict(claims), private, {"kid": registration.get_kid()}, expiration)
        return registration.platform_encode_and_sign(dict(claims), expiration=expiration)

    def admin_body(self) -> dict[str, Any]:
        return {"issuer": self.url, "client_id": self.client_id, "deployment_ids": [self.deployment_id],
                "auth_url": self.url + "/auth", "token_url": self.url + "/token", "jwks_url": self.url + "/jwks",
                "name": "Test-Moodle"}

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True


def _app(platform: Platform) -> FastAPI:
    app = FastAPI()

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        conf = platform.conf()
        conf.get_registration()
        return dict(conf.get_jwks())

    @app.get("/start")
    def start(request: Request, user: str, hint: str) -> Response:
        """The person clicks the activity: third-party initiated login at the tool."""
        conf = platform.conf()
        login = Login(request, conf)
        login.set_lti_message_hint(hint=hint)
        return login.initiate_login(user)

    @app.get("/auth")
    def auth(request: Request) -> Response:
        """The authentication request from the tool → the signed id_token, auto-posted to redirect_uri."""
        conf = platform.conf()
        launch = Launch(request, conf)
        launch.platform = platform  # type: ignore[attr-defined]
        return launch.lti_launch()

    @app.post("/deeplink-return")
    async def deeplink_return(request: Request) -> Response:
        form = await request.form()
        conf = platform.conf()
        conf.get_registration()
        items = conf.validate_deeplinking_resp({"JWT": form["JWT"]})  # verified with Flexi's JWKS
        platform.content_items.append(items)
        return JSONResponse({"saved": len(items)})

    @app.get("/frame")
    def frame() -> Response:
        return HTMLResponse(platform.frame_html)

    # --- dynamic registration, as Moodle serves it (the library has none) ---
    @app.get("/.well-known/openid-configuration")
    def openid_configuration() -> dict[str, Any]:
        return {"issuer": platform.url, "authorization_endpoint": platform.url + "/auth",
                "token_endpoint": platform.url + "/token", "jwks_uri": platform.url + "/jwks",
                "registration_endpoint": platform.url + "/register",
                "scopes_supported": ["openid"], "response_types_supported": ["id_token"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "https://purl.imsglobal.org/spec/lti-platform-configuration": {
                    "product_family_code": "moodle", "version": "4.5",
                    "messages_supported": [{"type": "LtiResourceLinkRequest"}, {"type": "LtiDeepLinkingRequest"}]}}

    @app.post("/register")
    async def register(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer reg-token-1":
            return JSONResponse({"error": "invalid token"}, status_code=401)
        body = await request.json()
        platform.registrations.append(body)
        return JSONResponse({**body, "client_id": platform.client_id,
                             "https://purl.imsglobal.org/spec/lti-tool-configuration": {
                                 **body["https://purl.imsglobal.org/spec/lti-tool-configuration"],
                                 "deployment_id": platform.deployment_id}})

    return app


def start_platform(tool_url: str, port: int | None = None) -> Platform:
    port = port or free_port()
    private, public = rsa_pem_pair()
    platform = Platform(url=f"http://127.0.0.1:{port}", tool=tool_url, private=private, public=public)
    config = uvicorn.Config(_app(platform), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    platform.server = server
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(platform.url + "/jwks", timeout=1).status_code == 200:
                return platform
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the LTI test platform did not start")


_FORM = re.compile(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', re.S | re.I)
_INPUT = re.compile(r'<input[^>]*name="([^"]*)"[^>]*value="([^"]*)"', re.I)


def form_of(page: str) -> tuple[str, dict[str, str]]:
    """The first form of a page: its action and its hidden fields (an auto-submitting form's content)."""
    match = _FORM.search(page)
    assert match, page[:500]
    fields = {html.unescape(k): html.unescape(v) for k, v in _INPUT.findall(match.group(2))}
    return html.unescape(match.group(1)), fields


class Browser:
    """A person's browser: cookies per host (Secure ones too — browsers treat localhost as secure), redirects
    followed, forms posted. Its cookie jar is what 'the same browser' means for the state check."""

    def __init__(self) -> None:
        self.cookies: dict[str, dict[str, str]] = {}
        self.client = httpx.Client(timeout=120, follow_redirects=False)

    def cookie_header(self, url: str) -> dict[str, str]:
        jar = self.cookies.get(urlsplit(url).netloc, {})
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}

    def _keep(self, url: str, response: httpx.Response) -> None:
        jar = self.cookies.setdefault(urlsplit(url).netloc, {})
        for raw in response.headers.get_list("set-cookie"):
            name, _, rest = raw.partition("=")
            value = rest.split(";", 1)[0]
            if value in ("", '""') or "max-age=0" in raw.lower():
                jar.pop(name, None)
            else:
                jar[name] = value

    def request(self, method: str, url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                follow: bool = True) -> httpx.Response:
        for _ in range(10):
            response = self.client.request(method, url, data=data, headers={**self.cookie_header(url), **(headers or {})})
            self._keep(url, response)
            if not follow or response.status_code not in (301, 302, 303, 307) or "location" not in response.headers:
                return response
            url = urljoin(url, response.headers["location"])
            if response.status_code != 307:
                method, data = "GET", None
        raise AssertionError("too many redirects")

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def submit(self, page: httpx.Response, headers: dict[str, str] | None = None) -> httpx.Response:
        action, fields = form_of(page.text)
        return self.request("POST", urljoin(str(page.url), action), data=fields, headers=headers)

    def close(self) -> None:
        self.client.close()
