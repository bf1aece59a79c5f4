"""Power into energy, energy into models and courses, per hour.

Every interval between two samples of a device becomes energy: the trapezoid of two power readings
(NVML), the difference of an energy counter (RAPL), or the interval's mean power × its length (the
estimate). A gap longer than `max_gap` (the server was suspended, the event loop stalled, a GPU missed
samples) is not bridged: that energy is unknown rather than guessed.

Each interval's energy is split by what ran in it (`BusyTracker`): the share of the interval in which
nothing ran goes to "idle" (model ""), the rest to the (model, course) pairs in proportion to their busy
seconds. One device's energy is attributed by the engine-wide busy time: which GPU runs which model is
the engine's business. Intervals are cut at hour boundaries, so every figure lands in its UTC hour.
Busy seconds and the peak of concurrent requests are kept once per interval (device "").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from flexi.energy.busy import BusyTracker
from flexi.energy.sources import PowerSource, Reading

log = logging.getLogger("flexi.energy")

IDLE = ""  # the model (and course 0) idle energy is attributed to
BUSY_DEVICE = ""  # rows that carry busy seconds instead of energy
HOUR = 3600


@dataclass
class Cell:
    joules: float = 0.0
    busy_seconds: float = 0.0
    estimated: bool = False


CellKey = tuple[int, str, str, int]  # (hour start, epoch seconds UTC; device; model; course id, 0 = none)


def hour_pieces(start: float, end: float) -> Iterator[tuple[int, float, float]]:
    """[start, end] cut at UTC hour boundaries: (hour start, piece start, piece end)."""
    a = start
    while a < end:
        hour = math.floor(a / HOUR) * HOUR
        b = min(end, hour + HOUR)
        yield hour, a, b
        a = b


class Sampler:
    def __init__(self, sources: Sequence[PowerSource], tracker: BusyTracker, *, max_gap: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.sources = list(sources)
        self.tracker = tracker
        self.max_gap = max_gap
        self.clock = clock
        self.cells: dict[CellKey, Cell] = {}
        self.peaks: dict[int, int] = {}
        self.latest: dict[str, Reading] = {}  # the newest reading of each device (metrics)
        self.power: dict[str, float] = {}  # watts of each device in its last interval (metrics)
        self.energy: dict[str, float] = {}  # joules of each device since start (metrics)
        self._last: dict[str, tuple[float, Reading]] = {}
        self.last_sample: float | None = None

    def read(self) -> list[Reading]:
        """Every source's devices now (a failing source misses this sample and is logged)."""
        out: list[Reading] = []
        for source in self.sources:
            try:
                out += source.read()
            except Exception:  # noqa: BLE001 (hardware and drivers we do not own)
                log.warning("reading power from %s failed", type(source).__name__, exc_info=True)
        return out

    def sample(self) -> None:
        self.record(self.read(), self.clock())

    def record(self, readings: Sequence[Reading], at: float) -> None:
        """Account for the interval since the previous sample, ending with `readings` taken at `at`."""
        before = self.last_sample
        if before is not None and 0 < at - before <= self.max_gap:
            for hour, a, b in hour_pieces(before, at):
                busy = self.tracker.busy(a, b)
                for (model, course), seconds in busy.seconds.items():
                    self._cell(hour, BUSY_DEVICE, model, course).busy_seconds += seconds
                self.peaks[hour] = max(self.peaks.get(hour, 0), busy.peak)
        self.last_sample = at
        for reading in readings:
            self._integrate(reading, at)
            self.latest[reading.device] = reading
        # finished requests before the earliest start a later interval can have are accounted for: normally
        # this sample's time, earlier only for a device that missed it (its next interval starts before)
        pending = [t for t, _ in self._last.values() if at - t <= self.max_gap]
        self.tracker.forget_before(min(pending, default=at))

    def _integrate(self, reading: Reading, at: float) -> None:
        previous = self._last.get(reading.device)
        self._last[reading.device] = (at, reading)
        if previous is None:
            if reading.watts is not None:
                self.power[reading.device] = reading.watts
            return
        start, prev = previous
        length = at - start
        if not 0 < length <= self.max_gap:
            return  # a gap (or a clock step back) is not bridged
        if reading.joules is not None and prev.joules is not None:
            joules = max(0.0, reading.joules - prev.joules)
        elif reading.watts is not None and reading.mean:
            joules = reading.watts * length
        elif reading.watts is not None and prev.watts is not None:
            joules = (prev.watts + reading.watts) / 2 * length
        else:
            return
        self.power[reading.device] = joules / length
        self.energy[reading.device] = self.energy.get(reading.device, 0.0) + joules
        self._attribute(reading.device, start, at, joules, not reading.measured)

    def _attribute(self, device: str, start: float, end: float, joules: float, estimated: bool) -> None:
        length = end - start
        for hour, a, b in hour_pieces(start, end):
            piece = joules * (b - a) / length
            busy = self.tracker.busy(a, b)
            busy_total = sum(busy.seconds.values())
            busy_share = min(1.0, busy.union / (b - a))
            idle = piece * (1.0 - busy_share)
            if idle > 0 or not busy_total:
                cell = self._cell(hour, device, IDLE, 0)
                cell.joules += idle if busy_total else piece
                cell.estimated |= estimated
            if busy_total:
                for (model, course), seconds in busy.seconds.items():
                    cell = self._cell(hour, device, model, course)
                    cell.joules += piece * busy_share * seconds / busy_total
                    cell.estimated |= estimated

    def _cell(self, hour: int, device: str, model: str, course: int) -> Cell:
        key = (hour, device, model, course)
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = Cell()
        return cell

    def drain(self) -> tuple[dict[CellKey, Cell], dict[int, int]]:
        """What accumulated since the last drain (the caller stores it)."""
        cells, peaks = self.cells, self.peaks
        self.cells, self.peaks = {}, {}
        return cells, peaks

    def restore(self, cells: dict[CellKey, Cell], peaks: dict[int, int]) -> None:
        """Put back what could not be stored, so the next flush tries again."""
        for key, cell in cells.items():
            mine = self._cell(*key)
            mine.joules += cell.joules
            mine.busy_seconds += cell.busy_seconds
            mine.estimated |= cell.estimated
        for hour, peak in peaks.items():
            self.peaks[hour] = max(self.peaks.get(hour, 0), peak)

    def close(self) -> None:
        for source in self.sources:
            source.close()
