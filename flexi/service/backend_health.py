"""The health of one remote engine: consecutive failures, a circuit breaker, the last probe's verdict and
the engine's own queue. Pure state, no HTTP: requests (`flexi/service/remote.py`) and probes
(`flexi/service/backend_probe.py`) report to it, routing asks it, and the clock is injectable so the
breaker is unit-tested without waiting.

The circuit: **closed** (requests go there) → **open** after `threshold` consecutive failures or one
failing probe (no request goes there, so nothing waits for a dead engine) → **half-open** once `cooldown`
seconds have passed (exactly one trial request at a time) → **closed** again on a success (a trial's
first token, or a good probe). A failed trial opens it for another cooldown. `threshold` 0 turns the
breaker off: failures are still counted and shown, routing ignores them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

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

    def admit(self) -> bool:
        """May a request go to this backend now? Half-open: only the first caller (the trial) may; it
        must end with `succeeded`, `failed` or `release`."""
        state = self.circuit
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def succeeded(self) -> None:
        """The backend answered (a first token, a finished answer, an embedding): the circuit closes."""
        self.consecutive = 0
        self._opened_at = None
        self._trial = False

    def failed(self, reason: str, message: str) -> None:
        """A failure that says something about the backend (not a refused request)."""
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.consecutive += 1
        self.last_error = message
        if self.threshold and self.circuit != OPEN and (self._trial or self.consecutive >= self.threshold):
            self._trip()

    def release(self) -> None:
        """A request ended without a verdict (cancelled, refused as invalid): let the next trial through."""
        self._trial = False

    def probed(self, ok: bool, error: str | None = None) -> None:
        """A health probe's result: a good one closes an open circuit, a failing one opens it at once."""
        self.probe_ok = ok
        self.last_checked = self.wall()
        if ok:
            if self._opened_at is not None:  # a closed circuit keeps counting its requests' failures
                self.succeeded()
            return
        self.failures["probe"] = self.failures.get("probe", 0) + 1
        self.last_error = error
        if self.threshold:
            self._trip()

    def _trip(self) -> None:
        self._opened_at = self.clock()
        self._trial = False
