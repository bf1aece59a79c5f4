"""The energy sampler's lifetime in the server: built and started in the lifespan, flushed every few
minutes and at shutdown, read by /metrics and the reports.

Sources are chosen once at start: every NVIDIA GPU NVML sees, plus the CPU packages through RAPL when
readable, else the CPU host estimated from FLEXI_ENERGY_IDLE_WATTS / FLEXI_ENERGY_BUSY_WATTS. With
FLEXI_ENERGY off nothing of this is built: the generation service gets no tracker and no task runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from flexi.config import Settings
from flexi.energy import store
from flexi.energy.busy import BusyTracker
from flexi.energy.estimate import EstimatedSource, HostCpuTime
from flexi.energy.nvml import NvmlSource
from flexi.energy.rapl import RaplSource
from flexi.energy.sampler import Sampler
from flexi.energy.sources import PowerSource, Reading

log = logging.getLogger("flexi.energy")

PURGE_EVERY = 3600.0


def max_gap(interval: float) -> float:
    """The longest interval still integrated: a few missed samples are bridged, a suspend is not."""
    return max(30.0, 3 * interval)


class EnergyService:
    def __init__(self, settings: Settings, engine: Engine, sources: Sequence[PowerSource] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.tracker = BusyTracker(clock)
        self.sampler = Sampler(sources if sources is not None else self._sources(), self.tracker,
                               max_gap=max_gap(settings.energy_interval), clock=clock)
        self.replica = settings.replica_name
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one flush at a time
        self._reading = asyncio.Lock()  # one sample at a time (sources keep counter state)
        self._purged = 0.0

    def _sources(self) -> list[PowerSource]:
        found: list[PowerSource] = []
        gpus = NvmlSource.open()
        if gpus is not None:
            found.append(gpus)
        cpu = RaplSource.open()
        found.append(cpu if cpu is not None else EstimatedSource(
            self.settings.energy_idle_watts, self.settings.energy_busy_watts, HostCpuTime(), self._busy_share))
        log.info("energy sampling every %.0f s from %s", self.settings.energy_interval,
                 ", ".join(type(s).__name__ for s in found))
        return found

    def _busy_share(self) -> float:
        """The share of the time since the last sample in which any request ran (the estimate's fallback)."""
        now, before = self.clock(), self.sampler.last_sample
        if before is None or now <= before:
            return 1.0 if self.tracker.running else 0.0
        return min(1.0, self.tracker.busy(before, now).union / (now - before))

    # --- lifetime ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self._sample()
        self._task = asyncio.create_task(self._run(), name="flexi-energy-sampler")

    async def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.energy_interval)
            try:
                await self._sample()
                if time.monotonic() - last_flush >= self.settings.energy_flush_interval:
                    last_flush = time.monotonic()
                    await self.flush()
            except Exception:  # noqa: BLE001 (a database hiccup must not end sampling)
                log.exception("energy sampling failed; retrying at the next interval")

    async def _sample(self) -> None:
        async with self._reading:
            readings = await asyncio.to_thread(self.sampler.read)  # sysfs and NVML block briefly
            self.sampler.record(readings, self.clock())

    async def flush(self) -> None:
        """Store what accumulated (kept for the next try when the database is unreachable); apply the
        retention at most once an hour."""
        async with self._lock:
            cells, peaks = self.sampler.drain()
            try:
                await asyncio.to_thread(store.store, self.engine, self.replica, cells, peaks)
            except Exception:
                self.sampler.restore(cells, peaks)
                raise
            if time.monotonic() - self._purged >= PURGE_EVERY or not self._purged:
                self._purged = time.monotonic()
                removed = await asyncio.to_thread(store.purge, self.engine, self.settings.energy_retention_days)
                if removed:
                    log.info("energy retention removed %d hourly rows", removed)

    async def bring_up_to_date(self) -> None:
        """Sample now and store everything (a report then includes the last seconds)."""
        await self._sample()
        await self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._sample()
            await self.flush()
        except Exception:  # noqa: BLE001
            log.exception("storing the last energy figures at shutdown failed")
        finally:
            self.sampler.close()

    # --- what /metrics reads (flexi.observability.metrics.EnergyView) ---------------------------
    def power(self) -> list[tuple[str, str, float]]:
        return [(device, self.sampler.latest[device].source, watts) for device, watts in self.sampler.power.items()
                if device in self.sampler.latest]

    def energy_joules(self) -> dict[str, float]:
        return dict(self.sampler.energy)

    def gpus(self) -> list[Reading]:
        return [r for r in self.sampler.latest.values() if r.utilisation is not None or r.memory_total is not None]
