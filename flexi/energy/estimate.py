"""The estimate for hosts without a readable power meter: idle + (busy − idle) × utilisation watts.

Utilisation is the host's CPU time (busy jiffies / all jiffies in /proc/stat since the last sample),
not the scheduler's busy share: the runners are separate processes whose CPU work is what draws power,
and a slot that holds one slow sequence costs less than a full batch although both count as "busy".
Where /proc/stat is unreadable (not Linux), the scheduler's busy share (the fraction of the interval in
which any request ran) stands in. Either way the figure is labelled "estimated".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flexi.energy.sources import ESTIMATE, Reading

PROC_STAT = Path("/proc/stat")


class HostCpuTime:
    """The share of CPU time the whole host spent busy since the previous call (None if unreadable)."""

    def __init__(self, path: Path = PROC_STAT) -> None:
        self.path = path
        self._last: tuple[int, int] | None = self._read()
        self._share: float | None = None

    def _read(self) -> tuple[int, int] | None:
        try:
            with self.path.open() as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 4:
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # guest time is already inside user time

    def __call__(self) -> float | None:
        now = self._read()
        if now is None or self._last is None:
            self._last = now
            return None
        if now[0] <= self._last[0]:
            return self._share  # no tick since the last call (a report sampled in between): the last figure
        total, idle = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        self._share = min(1.0, max(0.0, 1.0 - idle / total))
        return self._share


class EstimatedSource:
    """One device ("cpu") whose power is estimated from configured watts."""

    def __init__(self, idle_watts: float, busy_watts: float, utilisation: Callable[[], float | None],
                 fallback: Callable[[], float]) -> None:
        self.idle = idle_watts
        self.busy = busy_watts
        self.utilisation = utilisation
        self.fallback = fallback  # the scheduler's busy share, when the host's CPU time is unknown

    def read(self) -> list[Reading]:
        share = self.utilisation()
        if share is None:
            share = self.fallback()
        return [Reading("cpu", ESTIMATE, watts=self.idle + (self.busy - self.idle) * share, mean=True)]

    def close(self) -> None:
        pass
