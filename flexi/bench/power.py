"""Measured energy over a stretch of a benchmark, from the same sources the server uses (flexi/energy/).

RAPL counters are differenced, NVML power is sampled in a thread and integrated (trapezoid rule). Only
measured sources count: when neither is readable (no NVIDIA driver, RAPL readable by root only, a remote
server), the result says "not measurable" and no figure is given; the server's configured-watts estimate
is never presented as a measurement here. Both cover the whole CPU package or GPU, so idle draw and other
processes on the machine are included.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flexi.energy.nvml import NvmlSource
from flexi.energy.rapl import RaplSource
from flexi.energy.sources import PowerSource, Reading

SAMPLE_INTERVAL = 0.1  # seconds between NVML power readings


@dataclass
class Energy:
    """Joules per device over one measured stretch; `measured` False means no readable source."""

    measured: bool
    joules: dict[str, float] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def total_j(self) -> float | None:
        return sum(self.joules.values()) if self.measured else None

    def to_dict(self) -> dict[str, Any]:
        return {"measured": self.measured, "joules": self.total_j, "per_device_j": dict(self.joules),
                "sources": list(self.sources), "reason": self.reason}


def open_sources() -> list[PowerSource]:
    """The measured sources readable on this machine (possibly none)."""
    found: list[PowerSource] = []
    for source in (NvmlSource.open(), RaplSource.open()):
        if source is not None:
            found.append(source)
    return found


class PowerMeter:
    """Measure energy between `start` and `stop`; one meter per stretch."""

    def __init__(self, sources: list[PowerSource], interval: float = SAMPLE_INTERVAL) -> None:
        self.sources = sources
        self.interval = interval
        self._first: dict[str, float] = {}  # counters at start (RAPL)
        self._last_w: dict[str, tuple[float, float]] = {}  # device → (time, watts) (NVML)
        self._joules: dict[str, float] = {}
        self._kinds: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self, readings: list[Reading], at: float) -> None:
        for r in readings:
            if not r.measured:
                continue
            self._kinds.add(r.source)
            if r.joules is not None:
                self._first.setdefault(r.device, r.joules)
                self._joules[r.device] = r.joules - self._first[r.device]
            elif r.watts is not None:
                before = self._last_w.get(r.device)
                if before is not None:
                    self._joules[r.device] = self._joules.get(r.device, 0.0) + (at - before[0]) * (before[1] + r.watts) / 2
                else:
                    self._joules.setdefault(r.device, 0.0)
                self._last_w[r.device] = (at, r.watts)

    def _sample(self) -> None:
        for source in self.sources:
            self._record(source.read(), time.monotonic())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        if not self.sources:
            return
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="bench-power", daemon=True)
        self._thread.start()

    def stop(self) -> Energy:
        if not self.sources:
            return Energy(measured=False, reason=("no readable power source (NVML: no NVIDIA GPU or driver; RAPL: "
                                                 "none, or readable by root only)"))
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if not self._joules:
            return Energy(measured=False, reason="power sources gave no readings")
        return Energy(measured=True, joules=dict(self._joules), sources=sorted(self._kinds))
