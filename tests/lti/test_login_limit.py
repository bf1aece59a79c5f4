"""Started LTI logins per client address are limited (a flood from one address cannot evict everybody's
logins), the window slides, other addresses are not affected, and the memory stays bounded."""

from __future__ import annotations

from flexi.lti.login_limit import LoginLimit


def test_one_address_is_limited_per_window_and_others_are_not() -> None:
    now = [1000.0]
    limit = LoginLimit(per_address=3, window=600, clock=lambda: now[0])
    assert [limit.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("10.0.0.2")  # another client still gets in
    now[0] += 599
    assert not limit.allow("10.0.0.1")  # refusals are not counted, but the window is not over
    now[0] += 1
    assert limit.allow("10.0.0.1")  # the first logins left the window


def test_remembered_addresses_are_bounded() -> None:
    limit = LoginLimit(per_address=1, window=600, max_addresses=2, clock=lambda: 0.0)
    assert limit.allow("a") and limit.allow("b") and limit.allow("c")
    assert len(limit._seen) == 2 and limit.allow("a")  # "a" was forgotten as the least recently seen
