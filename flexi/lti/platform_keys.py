"""The platforms' signing keys (JWKS), cached per URL and fetched again when a token names a key id the
cache does not know (the platform rotated its keys) — at most once per REFRESH_SECONDS per URL, so a
stream of tokens with made-up key ids cannot make Flexi hammer a platform. Each URL has its own lock: a
slow or hanging platform holds up launches from that platform only, never the others'."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from flexi.lti.errors import LtiError
from flexi.lti.fetch import policy, request_json

REFRESH_SECONDS = 10.0
MAX_AGE = 3600.0


class PlatformKeys:
    def __init__(self, allow_hosts: Iterable[str] = ()) -> None:
        self.allow_hosts = tuple(allow_hosts)
        self._sets: dict[str, tuple[KeySet, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # per registered jwks_url (bounded by the platforms)

    async def key_set(self, jwks_url: str, kid: str | None, trusted: bool) -> KeySet:
        """The key set holding `kid` (fetched again if needed); `trusted`: an admin registered this URL."""
        lock = self._locks.setdefault(jwks_url, asyncio.Lock())  # no await in between: no shared lock needed
        async with lock:
            cached = self._sets.get(jwks_url)
            now = time.monotonic()
            stale = cached is None or now - cached[1] > MAX_AGE
            unknown = cached is not None and kid is not None and not any(k.kid == kid for k in cached[0].keys)
            if stale or (unknown and now - cached[1] > REFRESH_SECONDS):  # type: ignore[index]
                data = await request_json("GET", jwks_url, policy(self.allow_hosts, jwks_url if trusted else None))
                try:
                    keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError, KeyError):
                    raise LtiError("lti_fetch_failed", 502, "unreadable JWKS") from None
                self._sets[jwks_url] = (keys, now)
            return self._sets[jwks_url][0]
