"""Sign-in throttling that slows password guessing down without locking anyone out.

Failed sign-ins fill leaky buckets, one per account and address, one per account (from
every address: distributed guessing) and one per address (one address trying many
accounts). Past a bucket's free failures every further failure costs an exponentially
growing wait (4 s, 8 s, 16 s, …) up to a cap of a few minutes; while a wait runs, every
attempt on that bucket is answered 429 with Retry-After without checking the password.
The buckets leak, so waits stay bounded and end by themselves: there is no lock an
attacker could hold shut. Keying the strictest bucket on account *and* address means a
guesser at one address slows down only its own attempts on that account; the account-wide
bucket, which a distributed attacker can fill, has a short cap (a minute).
In memory, per process, bounded (least recently failed forgotten first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    free: int  # failures before waits begin
    leak_seconds: float  # one failure is forgotten per this many seconds
    base: float  # first wait, doubling with every further failure
    cap: float  # longest wait


PAIR = Rule(free=5, leak_seconds=60.0, base=4.0, cap=300.0)  # one account from one address
ACCOUNT = Rule(free=20, leak_seconds=30.0, base=4.0, cap=60.0)  # one account from anywhere
ADDRESS = Rule(free=100, leak_seconds=3.0, base=4.0, cap=300.0)  # one address (a campus NAT is many people)
MAX_BUCKETS = 100_000


@dataclass
class _Bucket:
    level: float
    at: float
    until: float


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = MAX_BUCKETS) -> None:
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @staticmethod
    def _keys(account: str, address: str) -> tuple[tuple[str, Rule], ...]:
        account = account.lower()
        return (("pair:" + account + "\x00" + address, PAIR), ("user:" + account, ACCOUNT), ("addr:" + address, ADDRESS))

    def retry_after(self, account: str, address: str) -> int:
        """Whole seconds until `account` may be tried from `address` again; 0 = now."""
        now = self.clock()
        wait = max((b.until - now for key, _ in self._keys(account, address) if (b := self._buckets.get(key))),
                   default=0.0)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        for key, rule in self._keys(account, address):
            bucket = self._buckets.pop(key, None)
            level = 0.0 if bucket is None else max(0.0, bucket.level - (now - bucket.at) / rule.leak_seconds)
            level += 1
            over = math.ceil(level - 1e-9) - rule.free  # failures beyond the free ones (partly leaked ones count)
            delay = 0.0 if over < 0 else min(rule.base * 2 ** min(over, 30), rule.cap)
            self._buckets[key] = _Bucket(level, now, now + delay)  # re-inserted: most recently failed last
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)

    def succeeded(self, account: str, address: str) -> None:
        """The right password: this browser's own failures are forgiven (the account-wide and
        address buckets are not: a distributed guesser could empty them with one own account)."""
        self._buckets.pop(self._keys(account, address)[0][0], None)
