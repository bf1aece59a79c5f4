"""The energy arithmetic with simulated power sources: integration, attribution, gaps, hours."""

from __future__ import annotations

import pytest

from flexi.energy.busy import BusyTracker
from flexi.energy.sampler import BUSY_DEVICE, IDLE, Sampler, hour_pieces
from flexi.energy.sources import Reading

T0 = 1_800_000_000.0  # an hour boundary (divisible by 3600)
HOUR = int(T0)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Constant:
    """A simulated meter: the same power every time."""

    def __init__(self, watts: float, device: str = "gpu:0", source: str = "nvml") -> None:
        self.watts, self.device, self.source = watts, device, source

    def read(self) -> list[Reading]:
        return [Reading(self.device, self.source, watts=self.watts)]

    def close(self) -> None:
        pass


def _sampler(*sources: object, max_gap: float = 60.0) -> tuple[Sampler, BusyTracker, Clock]:
    clock = Clock(T0)
    tracker = BusyTracker(clock)
    return Sampler(list(sources), tracker, max_gap=max_gap, clock=clock), tracker, clock  # type: ignore[arg-type]


def test_constant_power_is_split_by_busy_time_with_the_rest_idle() -> None:
    sampler, tracker, clock = _sampler(Constant(100.0))
    sampler.sample()  # t = 0
    a = tracker.begin("A", None, at=T0)
    tracker.end(a, at=T0 + 6)
    b = tracker.begin("B", 7, at=T0 + 6)
    tracker.end(b, at=T0 + 8)
    clock.now = T0 + 10
    sampler.sample()
    cells, peaks = sampler.drain()
    assert cells[(HOUR, "gpu:0", "A", 0)].joules == pytest.approx(600.0)
    assert cells[(HOUR, "gpu:0", "B", 7)].joules == pytest.approx(200.0)
    assert cells[(HOUR, "gpu:0", IDLE, 0)].joules == pytest.approx(200.0)
    assert cells[(HOUR, BUSY_DEVICE, "A", 0)].busy_seconds == pytest.approx(6.0)
    assert cells[(HOUR, BUSY_DEVICE, "B", 7)].busy_seconds == pytest.approx(2.0)
    assert peaks == {HOUR: 1}  # back to back, never at once
    assert not any(c.estimated for c in cells.values())
    assert sampler.energy["gpu:0"] == pytest.approx(1000.0)
    assert sampler.power["gpu:0"] == pytest.approx(100.0)


def test_overlapping_requests_share_the_busy_part_and_count_as_concurrent() -> None:
    sampler, tracker, clock = _sampler(Constant(100.0))
    sampler.sample()
    a = tracker.begin("A", None, at=T0 + 0)
    b = tracker.begin("B", None, at=T0 + 2)
    tracker.end(a, at=T0 + 6)
    tracker.end(b, at=T0 + 8)  # busy union 0..8 = 8 s; A 6 s, B 6 s
    clock.now = T0 + 10
    sampler.sample()
    cells, peaks = sampler.drain()
    assert cells[(HOUR, "gpu:0", "A", 0)].joules == pytest.approx(400.0)
    assert cells[(HOUR, "gpu:0", "B", 0)].joules == pytest.approx(400.0)
    assert cells[(HOUR, "gpu:0", IDLE, 0)].joules == pytest.approx(200.0)
    assert peaks[HOUR] == 2


def test_trapezoid_of_changing_power_and_a_request_still_running() -> None:
    class Ramp:
        def __init__(self) -> None:
            self.values = iter([100.0, 300.0])

        def read(self) -> list[Reading]:
            return [Reading("gpu:0", "nvml", watts=next(self.values))]

        def close(self) -> None:
            pass

    sampler, tracker, clock = _sampler(Ramp())
    sampler.sample()
    tracker.begin("A", 3, at=T0 - 5)  # started before the interval, still running
    clock.now = T0 + 4
    sampler.sample()
    cells, _ = sampler.drain()
    assert cells[(HOUR, "gpu:0", "A", 3)].joules == pytest.approx(800.0)  # (100 + 300) / 2 × 4 s
    assert (HOUR, "gpu:0", IDLE, 0) not in cells
    assert cells[(HOUR, BUSY_DEVICE, "A", 3)].busy_seconds == pytest.approx(4.0)


def test_estimated_mean_power_and_energy_counters() -> None:
    class Estimate:
        def read(self) -> list[Reading]:
            return [Reading("cpu", "estimate", watts=80.0, mean=True)]

        def close(self) -> None:
            pass

    class Counter:
        def __init__(self) -> None:
            self.values = iter([1000.0, 1250.0])

        def read(self) -> list[Reading]:
            return [Reading("cpu:package-0", "rapl", joules=next(self.values))]

        def close(self) -> None:
            pass

    sampler, _, clock = _sampler(Estimate(), Counter())
    sampler.sample()
    clock.now = T0 + 5
    sampler.sample()
    cells, _ = sampler.drain()
    estimated = cells[(HOUR, "cpu", IDLE, 0)]
    assert estimated.joules == pytest.approx(400.0) and estimated.estimated  # the mean × 5 s, labelled
    measured = cells[(HOUR, "cpu:package-0", IDLE, 0)]
    assert measured.joules == pytest.approx(250.0) and not measured.estimated
    assert sampler.power["cpu:package-0"] == pytest.approx(50.0)


def test_a_gap_longer_than_the_limit_is_not_bridged() -> None:
    sampler, tracker, clock = _sampler(Constant(100.0), max_gap=30.0)
    sampler.sample()
    tracker.begin("A", None, at=T0)
    clock.now = T0 + 31
    sampler.sample()
    assert sampler.drain() == ({}, {})
    clock.now = T0 + 41  # the next interval counts again
    sampler.sample()
    cells, _ = sampler.drain()
    assert cells[(HOUR, "gpu:0", "A", 0)].joules == pytest.approx(1000.0)


def test_an_interval_across_the_hour_is_cut_at_the_boundary() -> None:
    assert list(hour_pieces(T0 - 4, T0 + 6)) == [(HOUR - 3600, T0 - 4, T0), (HOUR, T0, T0 + 6)]
    sampler, tracker, clock = _sampler(Constant(100.0))
    clock.now = T0 - 4
    sampler.sample()
    t = tracker.begin("A", None, at=T0 - 4)
    tracker.end(t, at=T0 + 2)
    clock.now = T0 + 6
    sampler.sample()
    cells, peaks = sampler.drain()
    assert cells[(HOUR - 3600, "gpu:0", "A", 0)].joules == pytest.approx(400.0)
    assert cells[(HOUR, "gpu:0", "A", 0)].joules == pytest.approx(200.0)
    assert cells[(HOUR, "gpu:0", IDLE, 0)].joules == pytest.approx(400.0)
    assert cells[(HOUR - 3600, BUSY_DEVICE, "A", 0)].busy_seconds == pytest.approx(4.0)
    assert peaks == {HOUR - 3600: 1, HOUR: 1}


def test_a_failing_source_misses_its_sample_only() -> None:
    class Broken:
        def read(self) -> list[Reading]:
            raise OSError("gone")

        def close(self) -> None:
            pass

    sampler, _, clock = _sampler(Broken(), Constant(10.0, "cpu", "estimate"))
    sampler.sample()
    clock.now = T0 + 1
    sampler.sample()
    cells, _ = sampler.drain()
    assert cells[(HOUR, "cpu", IDLE, 0)].joules == pytest.approx(10.0)


async def test_watch_marks_busy_from_the_first_engine_event_until_the_end() -> None:
    from flexi.engine.types import Prefill, StatusEvent

    clock = Clock(T0)
    tracker = BusyTracker(clock)

    async def events():  # type: ignore[no-untyped-def]
        yield StatusEvent("queued")
        clock.now = T0 + 3
        yield Prefill(5)
        clock.now = T0 + 7

    seen = [e async for e in tracker.watch(events(), "A", 2)]
    assert len(seen) == 2
    busy = tracker.busy(T0, T0 + 10)
    assert busy.seconds == {("A", 2): pytest.approx(4.0)} and busy.union == pytest.approx(4.0)


def test_finished_requests_are_forgotten_once_accounted_for() -> None:
    sampler, tracker, clock = _sampler(Constant(100.0))
    sampler.sample()
    for i in range(100):
        tracker.end(tracker.begin("A", None, at=T0 + i * 0.01), at=T0 + i * 0.01 + 0.005)
    clock.now = T0 + 2
    sampler.sample()
    assert tracker._done == []  # nothing kept for intervals that are over
    cells, _ = sampler.drain()
    assert cells[(HOUR, BUSY_DEVICE, "A", 0)].busy_seconds == pytest.approx(0.5, abs=1e-4)
