"""The sampler's lifetime: started, stopped with the last interval stored, kept when the database fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from flexi.config import Settings
from flexi.db.engine import make_engine, session_factory
from flexi.db.migrate import upgrade
from flexi.db.models import EnergyHour, EnergyPeak
from flexi.energy.sampler import BUSY_DEVICE, IDLE
from flexi.energy.service import EnergyService
from flexi.energy.sources import Reading


class Meter:
    def read(self) -> list[Reading]:
        return [Reading("gpu:0", "nvml", watts=200.0)]

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng = make_engine(None, tmp_path)
    upgrade(eng)
    return eng


async def test_stop_stores_the_last_interval_with_busy_time_and_peak(engine: Engine, tmp_path: Path) -> None:
    clock, meter = Clock(), Meter()
    service = EnergyService(Settings(home=tmp_path, energy_interval=60, energy_replica="r1"), engine, [meter], clock)
    await service.start()
    token = service.tracker.begin("m", 4)
    clock.now += 3
    service.tracker.end(token)
    clock.now += 1
    await service.stop()
    with session_factory(engine)() as s:
        rows = {(r.device, r.model, r.course_id): r for r in s.scalars(select(EnergyHour))}
        peaks = [(p.replica, p.peak) for p in s.scalars(select(EnergyPeak))]
    assert rows[("gpu:0", "m", 4)].joules == pytest.approx(600.0)
    assert rows[("gpu:0", IDLE, 0)].joules == pytest.approx(200.0)
    assert rows[(BUSY_DEVICE, "m", 4)].busy_seconds == pytest.approx(3.0)
    assert {r.replica for r in rows.values()} == {"r1"} and peaks == [("r1", 1)]
    assert meter.closed


async def test_figures_stay_for_the_next_flush_when_the_database_fails(engine: Engine, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    service = EnergyService(Settings(home=tmp_path, energy_interval=60), engine, [Meter()], clock)
    await service.start()
    clock.now += 5
    from flexi.energy import store

    def down(*args: object) -> None:
        raise OSError("database unreachable")

    with monkeypatch.context() as m:
        m.setattr(store, "store", down)
        with pytest.raises(OSError):
            await service.bring_up_to_date()
    await service.flush()
    with session_factory(engine)() as s:
        assert sum(r.joules for r in s.scalars(select(EnergyHour))) == pytest.approx(1000.0)
    await asyncio.wait_for(service.stop(), 5)
