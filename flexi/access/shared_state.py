"""What several Flexi replicas must share beyond the database: kept in Redis (FLEXI_REDIS_URL).

Quotas and rate limits need nothing here: their counters are conditional atomic UPDATEs in the
database (flexi.access.quota), exact across replicas on PostgreSQL and persistent, and the
admission already runs that one transaction. What is per process without Redis:

- the per-person cap on concurrent requests (FLEXI_MAX_REQUESTS_PER_USER): every running or
  waiting request holds a *lease* in a sorted set per person and model, scored by its expiry.
  A replica refreshes its leases while they run, so the leases of a replica that was killed
  expire by themselves (FLEXI_REDIS_LEASE_SECONDS) instead of blocking that person for good;
- the sign-in throttle's leaky buckets (flexi.access.throttle), the same arithmetic in one Lua
  script, so a guesser gains nothing by spreading attempts over replicas.

Both are decided by Lua scripts (check and change in one atomic step) on Redis's own clock, so
replicas with drifting clocks agree. When Redis cannot be reached, FLEXI_REDIS_FAILURE decides:
`closed` (default) refuses what Redis guards with 503 and Retry-After; `open` falls back to each
replica's own cap and throttle and logs a warning. Either way the next request tries Redis again
(the client reconnects by itself): nothing needs a restart when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from flexi.access.throttle import LoginThrottle, Rule

log = logging.getLogger("flexi.access.shared")
PREFIX = "flexi:"
RETRY_AFTER = 5  # seconds a client is asked to wait while Redis is unreachable (fail closed)
WARN_EVERY = 30.0  # seconds between warnings about an unreachable Redis (fail open)
OUTAGE_PAUSE = 1.0  # seconds Redis is not asked again after a failure (no connection timeout per request)

# KEYS[1] the person's leases on a model; ARGV: cap, lease ms, lease id. 1 = taken, 0 = at the cap.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return 1
"""

# KEYS[1] a lease set; ARGV: lease ms, lease ids still running here. Only existing leases are renewed.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + ms, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], 2 * ms)
return 1
"""

# KEYS: the buckets (hashes level/at/until); ARGV: per bucket free, leak s, base s, cap s.
# The arithmetic of LoginThrottle.failed, on Redis's clock. Returns nothing.
_FAILED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  local free, leak, base, cap = tonumber(ARGV[4*i-3]), tonumber(ARGV[4*i-2]), tonumber(ARGV[4*i-1]), tonumber(ARGV[4*i])
  local old = redis.call('HMGET', key, 'level', 'at')
  local level = 0
  if old[1] then level = math.max(0, tonumber(old[1]) - (now - tonumber(old[2])) / leak) end
  level = level + 1
  local over = math.ceil(level - 1e-9) - free
  local delay = 0
  if over >= 0 then delay = math.min(base * 2 ^ math.min(over, 30), cap) end
  redis.call('HSET', key, 'level', tostring(level), 'at', tostring(now), 'until', tostring(now + delay))
  redis.call('EXPIRE', key, math.ceil(math.max(delay, (level + 1) * leak)) + 1)
end
return 1
"""

# KEYS: the buckets. Returns whole seconds until the next attempt may be checked (0 = now).
_RETRY_AFTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local wait = 0
for _, key in ipairs(KEYS) do
  local u = redis.call('HGET', key, 'until')
  if u and tonumber(u) - now > wait then wait = tonumber(u) - now end
end
return math.ceil(wait)
"""


class SharedStateUnavailable(Exception):
    """Redis cannot be reached and FLEXI_REDIS_FAILURE=closed: refuse (503), do not guess."""

    def __init__(self, retry_after: int = RETRY_AFTER) -> None:
        super().__init__("the shared state (Redis) is unreachable")
        self.retry_after = retry_after


@dataclass(eq=False)
class Lease:
    """One running or waiting request's place under its person's cap (empty when Redis was bypassed)."""

    key: str = ""
    member: str = ""


class _Warner:
    """Warn about an unreachable Redis at most every WARN_EVERY seconds (not once per request)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last = -math.inf

    def __call__(self, what: str, exc: BaseException) -> None:
        now = self.clock()
        if now - self._last >= WARN_EVERY:
            self._last = now
            log.warning("Redis unreachable (%s: %s); FLEXI_REDIS_FAILURE=open: %s falls back to this replica's "
                        "own limits", type(exc).__name__, exc, what)


class _Outage:
    """After a failure, Redis is not asked again for `pause` seconds: while it is down, requests are
    answered at once (503, or the fallback) instead of each waiting for a connection timeout."""

    def __init__(self, pause: float = OUTAGE_PAUSE, clock: Callable[[], float] = time.monotonic) -> None:
        self.pause = pause
        self.clock = clock
        self._until = -math.inf

    def check(self) -> None:
        if self.clock() < self._until:
            raise _Paused("Redis was unreachable moments ago")

    def failed(self, exc: BaseException) -> None:
        if not isinstance(exc, _Paused):  # only a real failure starts a pause: refusals must not extend it
            self._until = self.clock() + self.pause


class _Paused(redis.ConnectionError):
    """Redis was not asked: it failed less than OUTAGE_PAUSE seconds ago."""


def _client_options(asynchronous: bool = True) -> dict[str, object]:
    """Short timeouts: a request waits at most about a second for a Redis that is gone. One quick
    retry (on a fresh connection) covers a pooled connection that a Redis restart closed."""
    retry = (AsyncRetry if asynchronous else Retry)(ExponentialBackoff(cap=0.05, base=0.01), 1)
    return {"socket_connect_timeout": 1.0, "socket_timeout": 1.0, "retry": retry}


@dataclass(eq=False)
class ConcurrencyLeases:
    """The per-person cap across replicas: leases in Redis, refreshed while they run."""

    client: aioredis.Redis
    fail_open: bool
    lease_seconds: float = 30.0
    replica: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _held: dict[str, set[str]] = field(default_factory=dict)  # key -> lease ids running here
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _refresher: asyncio.Task[None] | None = None
    _warn: _Warner = field(default_factory=_Warner)
    _outage: _Outage = field(default_factory=_Outage)

    def __post_init__(self) -> None:
        self._acquire = self.client.register_script(_ACQUIRE)
        self._refresh = self.client.register_script(_REFRESH)

    @staticmethod
    def key(holder: str, model: str) -> str:
        return f"{PREFIX}lease:{model}:{holder}"

    async def acquire(self, holder: str, model: str, limit: int) -> Lease | None:
        """A lease, or None when `holder` already has `limit` requests on `model` on all replicas together.

        Raises SharedStateUnavailable when Redis is unreachable and failing closed; failing open,
        an empty lease (only this replica's own cap applies then)."""
        key, member = self.key(holder, model), f"{self.replica}:{next(self._ids)}"
        try:
            self._outage.check()
            taken = await self._acquire(keys=[key], args=[limit, int(self.lease_seconds * 1000), member])
        except redis.RedisError as exc:
            self._outage.failed(exc)
            if not self.fail_open:
                raise SharedStateUnavailable() from exc
            self._warn("the per-person request cap", exc)
            return Lease()
        if not taken:
            return None
        self._held.setdefault(key, set()).add(member)
        self._ensure_refresher()
        return Lease(key, member)

    async def release(self, lease: Lease) -> None:
        if not lease.key:
            return
        members = self._held.get(lease.key)
        if members is not None:
            members.discard(lease.member)
            if not members:
                del self._held[lease.key]
        try:
            await self.client.zrem(lease.key, lease.member)
        except redis.RedisError:
            pass  # it expires by itself within FLEXI_REDIS_LEASE_SECONDS

    def _ensure_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_loop(), name="flexi-redis-leases")

    async def _refresh_loop(self) -> None:
        """Renew this replica's leases every third of their lifetime while any run."""
        while self._held:
            await asyncio.sleep(self.lease_seconds / 3)
            ms = int(self.lease_seconds * 1000)
            for key, members in list(self._held.items()):
                if not members:
                    continue
                try:
                    await self._refresh(keys=[key], args=[ms, *members])
                except redis.RedisError as exc:
                    log.warning("could not renew request leases in Redis: %s", exc)
                    break

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher


class SharedLoginThrottle(LoginThrottle):
    """LoginThrottle's buckets in Redis (sync client: sign-in runs in a worker thread anyway).

    Failing open, this replica's own in-memory buckets stand in while Redis is unreachable."""

    def __init__(self, client: redis.Redis, fail_open: bool) -> None:
        super().__init__()
        self.client = client
        self.fail_open = fail_open
        self._failed = client.register_script(_FAILED)
        self._retry_after = client.register_script(_RETRY_AFTER)
        self._warn = _Warner()
        self._outage = _Outage()

    @staticmethod
    def _redis_keys(account: str, address: str) -> list[tuple[str, Rule]]:
        return [(PREFIX + "login:" + key, rule) for key, rule in LoginThrottle._keys(account, address)]

    def _fallback(self, exc: BaseException) -> None:
        self._outage.failed(exc)
        if not self.fail_open:
            raise SharedStateUnavailable() from exc
        self._warn("the sign-in throttle", exc)

    def retry_after(self, account: str, address: str) -> int:
        try:
            self._outage.check()
            return int(self._retry_after(keys=[k for k, _ in self._redis_keys(account, address)]))
        except redis.RedisError as exc:
            self._fallback(exc)
            return super().retry_after(account, address)

    def failed(self, account: str, address: str) -> None:
        keys = self._redis_keys(account, address)
        args: list[float] = []
        for _, rule in keys:
            args += [rule.free, rule.leak_seconds, rule.base, rule.cap]
        try:
            self._outage.check()
            self._failed(keys=[k for k, _ in keys], args=args)
        except redis.RedisError as exc:
            self._fallback(exc)
            super().failed(account, address)

    def succeeded(self, account: str, address: str) -> None:
        try:
            self._outage.check()
            self.client.delete(self._redis_keys(account, address)[0][0])
        except redis.RedisError as exc:
            self._fallback(exc)
            super().succeeded(account, address)


@dataclass(eq=False)
class SharedState:
    """The Redis-backed parts, built once in the lifespan when FLEXI_REDIS_URL is set."""

    leases: ConcurrencyLeases
    throttle: SharedLoginThrottle

    @classmethod
    def connect(cls, url: str, failure: str = "closed", lease_seconds: float = 30.0) -> SharedState:
        """Clients for `url` (nothing is sent yet: an unreachable Redis at start-up is handled per request)."""
        fail_open = failure == "open"
        leases = ConcurrencyLeases(aioredis.Redis.from_url(url, **_client_options()), fail_open, lease_seconds)
        throttle = SharedLoginThrottle(redis.Redis.from_url(url, **_client_options(asynchronous=False)), fail_open)
        return cls(leases, throttle)

    async def close(self) -> None:
        await self.leases.close()
        await self.leases.client.aclose()
        self.throttle.client.close()

