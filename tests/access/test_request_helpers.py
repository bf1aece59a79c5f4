"""The per-request helpers every router shares, each with one home and one behaviour."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from flexi.access.principal import Principal
from flexi.engine.types import EngineError
from flexi.http.locale import locale_of
from flexi.http.caller import CALLER_STATE, build_caller, caller_of


def _request(headers: dict[str, str], principal: Principal | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    request = Request({"type": "http", "headers": raw, "method": "GET", "path": "/"})
    if principal is not None:
        request.scope["state"] = {CALLER_STATE: build_caller(request.scope, principal, (), "test")}
    return request


def _principal(locale: str) -> Principal:
    return Principal(user_id=1, subject="u1", pseudonym="p" * 64, role="student", locale=locale)


def test_caller_of_returns_the_middlewares_caller() -> None:
    p = _principal("en")
    assert caller_of(_request({}, p)).principal is p


def test_caller_locale_is_accept_language_then_the_principals() -> None:
    assert caller_of(_request({"Accept-Language": "de-DE,en;q=0.5"}, _principal("en"))).locale == "de"
    assert caller_of(_request({"Accept-Language": "fr"}, _principal("de"))).locale == "de"
    assert caller_of(_request({}, _principal("de"))).locale == "de"


def test_missing_caller_is_a_server_bug_on_every_route() -> None:
    with pytest.raises(EngineError) as err:
        caller_of(_request({}))
    assert err.value.status == 500


def test_locale_accept_language_then_principal_then_default() -> None:
    assert locale_of(_request({"Accept-Language": "de-DE,en;q=0.5"}), _principal("en")) == "de"
    assert locale_of(_request({"Accept-Language": "fr"}), _principal("de")) == "de"
    assert locale_of(_request({}), _principal("de"), default="en") == "de"
    assert locale_of(_request({}), default="de") == "de"
    assert locale_of(_request({"Accept-Language": "en"}), default="de") == "en"
