"""Who a request counts as in the fair queue, and its priority class (the `Caller` the access
middleware builds: flexi.http.caller.build_caller)."""

from __future__ import annotations

from flexi.access.caller import Caller
from flexi.access.principal import Principal
from flexi.http.caller import build_caller

LOCAL = Principal(user_id=None, subject="local", pseudonym="p" * 64, role="admin", locale="en", local=True)


def _request(headers: dict[str, str], client: tuple[str, int] = ("10.0.0.5", 5000),
             principal: Principal = LOCAL) -> Caller:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return build_caller({"type": "http", "headers": raw, "client": client, "method": "POST", "path": "/"},
                        principal, (), "test")


def client_identity(caller: Caller, end_user: str | None = None) -> str:
    return caller.identity_for(end_user)


def priority_of(caller: Caller, body_priority: int | None = None) -> int:
    return caller.priority_for(body_priority)


def test_bearer_token_identifies_the_client_without_storing_it() -> None:
    a = client_identity(_request({"Authorization": "Bearer secret-key-1"}))
    b = client_identity(_request({"Authorization": "Bearer secret-key-2"}))
    assert a != b and "secret" not in a
    assert client_identity(_request({"x-api-key": "secret-key-1"})) == a  # same key, other header


def test_one_key_is_one_client_whichever_header_carries_it() -> None:
    import base64

    bearer = client_identity(_request({"Authorization": "Bearer secret-key-1"}))
    basic = base64.b64encode(b"moodle:secret-key-1").decode()
    assert client_identity(_request({"Authorization": f"Basic {basic}"})) == bearer
    assert client_identity(_request({"api-key": "secret-key-1"})) == bearer


def test_malformed_or_conflicting_key_headers_count_as_no_key_not_as_an_error() -> None:
    anon = client_identity(_request({}))
    assert client_identity(_request({"Authorization": "Basic not-base64!"})) == anon
    assert client_identity(_request({"Authorization": "Bearer a", "x-api-key": "b"})) == anon
    assert client_identity(_request({"Authorization": "Bearer " + "k" * 600})) == anon
    assert client_identity(_request({"Cookie": "flexi_session=abc"})) == anon  # a browser is its address


def test_address_when_no_key_and_end_user_subdivides() -> None:
    anon = client_identity(_request({}))
    assert anon.startswith("addr:10.0.0.5")
    alice = client_identity(_request({}), end_user="alice")
    bob = client_identity(_request({}), end_user="bob")
    assert alice != bob and alice.startswith(anon)


def test_priority() -> None:
    assert priority_of(_request({})) == 0
    assert priority_of(_request({"X-Flexi-Priority": "batch"})) == 1
    assert priority_of(_request({"X-Flexi-Priority": "interactive"}), body_priority=5) == 0
    assert priority_of(_request({}), body_priority=3) == 1
    assert priority_of(_request({}), body_priority=-1) == 0


def _signed_in(role: str, user_id: int, headers: dict[str, str] | None = None) -> Caller:
    return _request(headers or {}, principal=Principal(user_id=user_id, subject=f"u{user_id}", pseudonym="p" * 64,
                                                       role=role, locale="en", key_id=user_id * 10))


def test_authenticated_user_is_one_client_whatever_key_and_service_role_is_batch() -> None:
    assert client_identity(_signed_in("student", 7)) == "user:7"
    assert client_identity(_signed_in("student", 7), end_user="bob") == "user:7"  # a student cannot split their turn
    assert client_identity(_signed_in("service", 9), end_user="bob").startswith("user:9/user:")  # Moodle relaying
    assert priority_of(_signed_in("student", 7)) == 0
    assert priority_of(_signed_in("service", 8)) == 1
    assert priority_of(_signed_in("service", 8, {"X-Flexi-Priority": "interactive"})) == 0


def test_the_queue_splits_exactly_where_the_budget_does() -> None:
    """A key-less Moodle mapped to a service USER (no key) gets no per-end-user quotas, so its end users must
    not get separate turns either: one predicate (`splits_end_users`) decides both."""
    from flexi.access.principal import splits_end_users

    keyless_user = _request({}, principal=Principal(user_id=9, subject="moodle", pseudonym="p" * 64, role="service",
                                                    locale="en"))
    assert not splits_end_users(keyless_user.principal)
    assert client_identity(keyless_user, end_user="bob") == "user:9"
    with_key = _signed_in("service", 9)
    assert splits_end_users(with_key.principal) and client_identity(with_key, end_user="bob") != "user:9"
    assert client_identity(_request({}), end_user="bob") != client_identity(_request({}))  # auth=off: no budgets, splits
