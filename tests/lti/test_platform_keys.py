"""The platforms' key sets are cached, fetched again for an unknown kid (key rotation), but at most once per
REFRESH_SECONDS per URL: tokens with made-up key ids cannot make Flexi hammer a platform."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from flexi.lti import platform_keys
from flexi.lti.errors import LtiError
from flexi.lti.platform_keys import PlatformKeys


def _jwks(*kids: str) -> dict[str, Any]:
    return {"keys": [RSAKey.generate_key(2048, parameters={"kid": k}, private=False).as_dict() for k in kids]}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"now": 1000.0, "calls": 0, "answer": _jwks("k1")}

    async def request_json(method: str, url: str, policy: Any, **kw: Any) -> dict[str, Any]:
        state["calls"] += 1
        state["policy"] = policy
        if isinstance(state["answer"], Exception):
            raise state["answer"]
        return state["answer"]

    monkeypatch.setattr(platform_keys, "request_json", request_json)
    monkeypatch.setattr(platform_keys.time, "monotonic", lambda: state["now"])
    return state


async def test_cached_refreshed_on_rotation_and_rate_limited(fake: dict[str, Any]) -> None:
    keys = PlatformKeys(["10.0.0.0/8"])
    assert [k.kid for k in (await keys.key_set("https://m.example/jwks", "k1", True)).keys] == ["k1"]
    await keys.key_set("https://m.example/jwks", "k1", True)
    assert fake["calls"] == 1  # cached
    fake["answer"] = _jwks("k2")
    fake["now"] += 2
    await keys.key_set("https://m.example/jwks", "k2", True)
    assert fake["calls"] == 1  # an unknown kid right after a fetch does not fetch again
    fake["now"] += platform_keys.REFRESH_SECONDS
    found = await keys.key_set("https://m.example/jwks", "k2", True)
    assert fake["calls"] == 2 and [k.kid for k in found.keys] == ["k2"]  # the platform rotated its key
    assert fake["policy"].names_host("m.example")  # an admin-registered URL is allowed


async def test_dynamic_platforms_get_no_host_exception_and_bad_sets_are_refused(fake: dict[str, Any]) -> None:
    keys = PlatformKeys()
    await keys.key_set("https://m.example/jwks", "k1", trusted=False)
    assert not fake["policy"].names_host("m.example")
    fake["answer"] = {"keys": [{"kty": "nonsense"}]}
    with pytest.raises(LtiError) as err:
        await keys.key_set("https://other.example/jwks", "k1", trusted=False)
    assert err.value.key == "lti_fetch_failed"


async def test_a_hanging_platform_does_not_hold_up_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    hang = asyncio.Event()
    started = asyncio.Event()

    async def request_json(method: str, url: str, policy: Any, **kw: Any) -> dict[str, Any]:
        if "slow" in url:
            started.set()
            await hang.wait()  # a platform whose JWKS endpoint never answers (until the test lets it)
        return _jwks("k1")

    monkeypatch.setattr(platform_keys, "request_json", request_json)
    keys = PlatformKeys()
    slow = asyncio.create_task(keys.key_set("https://slow.example/jwks", "k1", True))
    await asyncio.wait_for(started.wait(), 5)
    fast = await asyncio.wait_for(keys.key_set("https://fast.example/jwks", "k1", True), 2)
    assert [k.kid for k in fast.keys] == ["k1"] and not slow.done()
    hang.set()
    assert [k.kid for k in (await asyncio.wait_for(slow, 5)).keys] == ["k1"]
