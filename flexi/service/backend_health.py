"""The health of one remote engine: consecutive failures, a circuit breaker, the last probe's verdict and
the engine's own queue. Pure state, no HTTP: requests (`flexi/service/remote.py`) and probes
(`flexi/service/backend_probe.py`) report to it, routing asks it, and the clock is injectable so the
breaker is unit-tested without waiting.

The circuit: **closed** (requests go there) → **open** after `threshold` consecutive failures, of
requests or of health probes (no request goes there, so nothing waits for a dead engine) → **half-open**
once `cooldown` seconds have passed (exactly one trial request at a time, owned by the request that got
it) → **closed** again on a success (a first token, or a good probe once the cooldown is over). A good
probe closes a circuit early only if probes opened it: health endpoints often pass while generation fails
(Ollama's /api/version always answers), so they cannot overrule failing requests. A failed trial opens it
for another cooldown. `threshold` 0 turns the breaker off: failures are still counted and shown, routing
ignores them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

Admission = Literal["pass", "trial"]  # what `admit` grants: a closed circuit's pass, or the half-open trial
Circuit = Literal["closed", "half-open", "open"]
CLOSED: Circuit = "closed"
HALF_OPEN: Circuit = "half-open"
OPEN: Circuit = "open"
#: flexi_backend_circuit_state's values
CIRCUIT_CODES: dict[Circuit, int] = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
#: Why a backend failed (a bounded label): unreachable, timed out, HTTP 5xx, unreadable answer, stream cut
#: before the end, an error inside the stream, a failing health probe.
FAILURE_REASONS = ("connect", "timeout", "http_5xx", "garbage", "cut", "error", "probe")


class BackendHealth:
    """Health and circuit of one backend. Single-threaded (the event loop): no locks."""

    def __init__(self, threshold: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.wall = wall
        self.consecutive = 0
        self.failures: dict[str, int] = {}  # reason -> count since start (flexi_backend_failures_total)
        self.probe_ok: bool | None = None  # the last probe's verdict; None: not probed (yet)
        self.last_error: str | None = None
        self.last_checked: float | None = None  # wall-clock time of the last probe
        self.engine_waiting = 0  # the engine's own queue from its /metrics (vLLM, llama-server); 0 when unknown
        self.engine_running = 0
        self._opened_at: float | None = None
        self._opened_by_probe = False
        self._trial = False

    @property
    def circuit(self) -> Circuit:
        if self._opened_at is None:
            return CLOSED
        return HALF_OPEN if self.clock() >= self._opened_at + self.cooldown else OPEN

    @property
    def up(self) -> bool:
        """Closed circuit and no failing probe."""
        return self.circuit == CLOSED and self.probe_ok is not False

    def remaining(self) -> float:
        """Seconds until an open circuit lets a trial through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - self.clock())

    def admit(self) -> Admission | None:
        """May a request go to this backend now? "pass" (closed), "trial" (half-open: only the first caller,
        which must end with `succeeded`, `failed` or `release`, and only it may release), None (no)."""
        state = self.circuit
        if state == CLOSED:
            return "pass"
        if state == HALF_OPEN and not self._trial:
            self._trial = True
            return "trial"
        return None

    def succeeded(self) -> None:
        """The backend answered (a first token, a finished answer, an embedding): the circuit closes."""
        self.consecutive = 0
        self._opened_at = None
        self._opened_by_probe = False
        self._trial = False

    def failed(self, reason: str, message: str) -> None:
        """A failure that says something about the backend (not a refused request)."""
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.consecutive += 1
        self.last_error = message
        if self.threshold and self.circuit != OPEN and (self._trial or self.consecutive >= self.threshold):
            self._trip(by_probe=reason == "probe")

    def release(self) -> None:
        """The trial request ended without a verdict (cancelled, refused as invalid): the next may try.
        Only the holder of the trial calls this (`admit` said "trial")."""
        self._trial = False

    def probed(self, ok: bool | None, error: str | None = None) -> None:
        """A health probe's result. A failing one counts like a failing request (`threshold` in a row open
        the circuit). A good one closes a circuit that probes opened, or any once its cooldown is over; a
        circuit that failing requests opened stays open for its cooldown. None: no verdict (the engine has
        no health endpoint there, or is busy)."""
        self.last_checked = self.wall()
        if ok is None:
            return
        self.probe_ok = ok
        if ok:
            if self._opened_at is not None and (self._opened_by_probe or self.circuit == HALF_OPEN) and not self._trial:
                self.succeeded()
            return
        self.failed("probe", error or "health probe failed")

    def _trip(self, by_probe: bool = False) -> None:
        self._opened_at = self.clock()
        self._opened_by_probe = by_probe
        self._trial = False
