"""How many LTI logins one client address may start: anyone can start one (/lti/login is public), and the
started logins table keeps at most MAX_LOGINS (flexi.lti.logins), so without a per-address limit one
client could evict everybody's logins. Counted in memory per replica (the table stores no address): with
N replicas behind a balancer an address gets up to N times the limit, still far below MAX_LOGINS.

The limit is generous on purpose: a lecture hall behind one campus NAT address opens the activity at once."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

PER_ADDRESS = 300  # started logins per client address (IPv6: per /64) …
WINDOW_SECONDS = 600.0  # … per ten minutes (a login lives as long, flexi.lti.logins.LOGIN_SECONDS)
MAX_ADDRESSES = 100_000  # addresses remembered at most; beyond, the least recently seen are forgotten


class LoginLimit:
    def __init__(self, per_address: int = PER_ADDRESS, window: float = WINDOW_SECONDS,
                 max_addresses: int = MAX_ADDRESSES, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_address, self.window, self.max_addresses, self._clock = per_address, window, max_addresses, clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, address: str) -> bool:
        """Count a login started by `address`; False (not counted) when it has started too many lately."""
        now = self._clock()
        times = self._seen.pop(address, None) or deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        self._seen[address] = times  # the most recently seen last
        if len(times) >= self.per_address:
            return False
        times.append(now)
        while len(self._seen) > self.max_addresses:
            self._seen.popitem(last=False)
        return True
