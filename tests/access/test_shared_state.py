"""What replicas share in Redis (flexi.access.shared_state), against a real redis-server: the per-person
cap counted over two replicas, leases of a dead replica expiring, the sign-in throttle's buckets, and
both failure modes while Redis is down, recovering when it is back (same clients, no restart)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis
import redis.asyncio as aioredis

from flexi.access.shared_state import (
    ConcurrencyLeases,
    Lease,
    SharedLoginThrottle,
    SharedState,
    OUTAGE_PAUSE,
    SharedStateUnavailable,
    _client_options,
    _Outage,
)
from flexi.access.throttle import PAIR, LoginThrottle
from tests.redis_server import RedisServer


def _leases(server: RedisServer, replica: str, *, fail_open: bool = False, seconds: float = 30.0) -> ConcurrencyLeases:
    return ConcurrencyLeases(aioredis.Redis.from_url(server.url, **_client_options()), fail_open, seconds, replica)


async def _close(*leases: ConcurrencyLeases) -> None:
    for lease in leases:
        await lease.close()
        await lease.client.aclose()


async def test_cap_counts_the_requests_of_every_replica(redis_server: RedisServer) -> None:
    a, b = _leases(redis_server, "a"), _leases(redis_server, "b")
    try:
        first = await a.acquire("user:1", "m", 3)
        second = await b.acquire("user:1", "m", 3)
        third = await a.acquire("user:1", "m", 3)
        assert first and second and third
        assert await b.acquire("user:1", "m", 3) is None  # the fourth, wherever it comes in
        assert await a.acquire("user:1", "other-model", 3)  # the cap is per model...
        assert await b.acquire("user:2", "m", 3)  # ...and per person
        await a.release(first)
        assert await b.acquire("user:1", "m", 3)  # a place freed on one replica is free on the other
        assert await a.acquire("user:1", "m", 3) is None
    finally:
        await _close(a, b)


async def test_concurrent_acquisitions_never_exceed_the_cap(redis_server: RedisServer) -> None:
    replicas = [_leases(redis_server, f"r{i}") for i in range(4)]
    try:
        results = await asyncio.gather(*(replicas[i % 4].acquire("user:9", "m", 5) for i in range(40)))
        assert sum(1 for r in results if r is not None) == 5
    finally:
        await _close(*replicas)


async def test_leases_are_renewed_while_running_and_expire_when_the_replica_dies(redis_server: RedisServer) -> None:
    alive, dying, other = (_leases(redis_server, name, seconds=1.0) for name in ("alive", "dying", "other"))
    try:
        assert await alive.acquire("user:1", "m", 2)
        assert await dying.acquire("user:1", "m", 2)
        await dying.close()  # killed: its lease is never renewed nor released
        await asyncio.sleep(2.0)  # two lifetimes: the live one was renewed, the dead one ran out
        assert await other.acquire("user:1", "m", 2)  # the dead replica's place is free again
        assert await other.acquire("user:1", "m", 2) is None  # the live replica's lease still counts
    finally:
        await _close(alive, dying, other)


async def test_unreachable_redis_fails_closed_by_default_and_recovers(redis_server: RedisServer) -> None:
    leases = _leases(redis_server, "a")
    try:
        held = await leases.acquire("user:1", "m", 1)
        assert held
        redis_server.stop()
        with pytest.raises(SharedStateUnavailable) as refused:
            await leases.acquire("user:1", "m", 1)
        assert refused.value.retry_after > 0
        await leases.release(held)  # does not raise: the lease would expire by itself
        redis_server.start()  # same port, empty: the client reconnects on its own (after the outage pause)
        await asyncio.sleep(OUTAGE_PAUSE)
        assert await leases.acquire("user:1", "m", 1)
        assert await leases.acquire("user:1", "m", 1) is None
    finally:
        await _close(leases)


async def test_fail_open_falls_back_to_the_replica_and_warns(redis_server: RedisServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    leases = _leases(redis_server, "a", fail_open=True)
    try:
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="flexi.access.shared"):
            first, second = await leases.acquire("user:1", "m", 1), await leases.acquire("user:1", "m", 1)
        assert first == Lease() or (first is not None and not first.key)
        assert second is not None and not second.key  # not refused: only this replica's own cap applies now
        assert sum("FLEXI_REDIS_FAILURE=open" in r.message for r in caplog.records) == 1  # warned once, not per request
        redis_server.start()
        await asyncio.sleep(OUTAGE_PAUSE)
        assert (await leases.acquire("user:1", "m", 1)).key  # type: ignore[union-attr]
        assert await leases.acquire("user:1", "m", 1) is None
    finally:
        await _close(leases)


def _throttle(server: RedisServer, fail_open: bool = False) -> SharedLoginThrottle:
    return SharedLoginThrottle(redis.Redis.from_url(server.url, **_client_options(asynchronous=False)), fail_open)


def test_sign_in_throttle_is_shared_and_matches_the_local_arithmetic(redis_server: RedisServer) -> None:
    a, b = _throttle(redis_server), _throttle(redis_server)
    local = LoginThrottle()
    for n in range(PAIR.free):  # spread over both replicas; the last free failure starts the first wait
        assert (a if n % 2 else b).retry_after("Alice", "203.0.113.5") == 0
        (a if n % 2 else b).failed("Alice", "203.0.113.5")
        local.failed("Alice", "203.0.113.5")
    expected = local.retry_after("alice", "203.0.113.5")
    assert expected == PAIR.base
    assert a.retry_after("alice", "203.0.113.5") == b.retry_after("ALICE", "203.0.113.5") == expected
    assert a.retry_after("alice", "198.51.100.1") == 0  # another address is not slowed down by this pair
    b.succeeded("alice", "203.0.113.5")  # the right password on one replica forgives this browser everywhere
    assert a.retry_after("alice", "203.0.113.5") == 0
    assert redis_server.proc is not None
    keys = redis.Redis.from_url(redis_server.url).keys("flexi:login:*")
    assert keys and all(redis.Redis.from_url(redis_server.url).ttl(k) > 0 for k in keys)  # buckets expire


def test_sign_in_throttle_without_redis(redis_server: RedisServer) -> None:
    closed, open_ = _throttle(redis_server), _throttle(redis_server, fail_open=True)
    redis_server.stop()
    with pytest.raises(SharedStateUnavailable):
        closed.retry_after("alice", "203.0.113.5")
    with pytest.raises(SharedStateUnavailable):
        closed.failed("alice", "203.0.113.5")
    for _ in range(PAIR.free):  # open: this replica's own buckets stand in
        open_.failed("alice", "203.0.113.5")
    assert open_.retry_after("alice", "203.0.113.5") == PAIR.base
    redis_server.start()
    time.sleep(OUTAGE_PAUSE)
    assert closed.retry_after("alice", "203.0.113.5") == 0  # back (and empty) without a restart


async def test_shared_state_connects_lazily_and_closes(redis_server: RedisServer) -> None:
    redis_server.stop()
    shared = SharedState.connect(redis_server.url, "closed", 5.0)  # Redis down at start-up: no failure yet
    redis_server.start()
    assert shared.leases.lease_seconds == 5.0 and not shared.leases.fail_open and not shared.throttle.fail_open
    assert await shared.leases.acquire("u", "m", 1)
    await shared.close()


def test_after_a_failure_redis_is_not_asked_again_for_a_moment() -> None:
    now = [100.0]
    outage = _Outage(pause=1.0, clock=lambda: now[0])
    outage.check()  # nothing failed yet
    outage.failed(redis.ConnectionError("refused"))
    now[0] += 0.5
    with pytest.raises(redis.ConnectionError) as paused:
        outage.check()  # answered at once, no connection timeout per request while Redis is down
    outage.failed(paused.value)  # a request refused during the pause does not extend it...
    now[0] += 0.5
    outage.check()  # ...so Redis is asked again one pause after the real failure: recovery needs no restart


async def test_connections_pooled_before_a_redis_restart_do_not_fail_requests(redis_server: RedisServer) -> None:
    leases = _leases(redis_server, "a")
    try:
        first = await asyncio.gather(*(leases.acquire(f"user:{i}", "m", 1) for i in range(8)))  # several connections
        assert all(first)
        redis_server.stop()
        redis_server.start()  # nothing was asked meanwhile: every pooled connection is stale now
        again = await asyncio.gather(*(leases.acquire(f"user:{i}", "m", 1) for i in range(8)))
        assert all(again)  # each retried once on a fresh connection (Redis forgot the old leases)
    finally:
        await _close(leases)
