"""Hourly aggregates in the database (SQLite and PostgreSQL): downsampling, replicas, retention, reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from flexi.db.engine import session_factory
from flexi.db.models import Course, EnergyHour, EnergyPeak
from flexi.energy.report import Prices, energy_report, parse_groups, window
from flexi.energy.sampler import BUSY_DEVICE, IDLE, Cell
from flexi.energy.store import purge, store

H = int(datetime(2026, 11, 30, 9, tzinfo=UTC).timestamp())
PRICES = Prices(0.30, 380.0)
KWH = 3.6e6


def test_flushes_of_one_hour_add_up_and_replicas_keep_their_own_rows(db: Engine) -> None:
    store(db, "a:1", {(H, "gpu:0", "m", 0): Cell(100.0), (H, BUSY_DEVICE, "m", 0): Cell(busy_seconds=2.0)}, {H: 2})
    store(db, "a:1", {(H, "gpu:0", "m", 0): Cell(50.0, estimated=True), (H + 3600, "gpu:0", "m", 0): Cell(7.0)}, {H: 1})
    store(db, "b:1", {(H, "gpu:0", "m", 0): Cell(25.0)}, {H: 3})
    with session_factory(db)() as s:
        rows = {(r.hour, r.replica, r.device): r for r in s.scalars(select(EnergyHour))}
        hour = datetime.fromtimestamp(H, UTC)
        assert len(rows) == 4
        mine = rows[(hour, "a:1", "gpu:0")]
        assert (mine.joules, mine.estimated) == (150.0, True)  # downsampled into one hourly row
        assert rows[(hour, "b:1", "gpu:0")].joules == 25.0
        peaks = {(p.hour, p.replica): p.peak for p in s.scalars(select(EnergyPeak))}
        assert peaks == {(hour, "a:1"): 2, (hour, "b:1"): 3}


def test_retention_deletes_old_hours_only(db: Engine) -> None:
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    old, recent = int((now - timedelta(days=401)).timestamp()) // 3600 * 3600, int((now - timedelta(days=399)).timestamp()) // 3600 * 3600
    store(db, "a", {(old, "cpu", IDLE, 0): Cell(1.0), (recent, "cpu", IDLE, 0): Cell(2.0)}, {old: 1, recent: 1})
    assert purge(db, 400, now=now) == 2
    with session_factory(db)() as s:
        assert [r.joules for r in s.scalars(select(EnergyHour))] == [2.0]
        assert s.scalar(select(func.count()).select_from(EnergyPeak)) == 1


def test_report_in_kwh_euro_and_co2_summed_over_replicas(db: Engine) -> None:
    with session_factory(db)() as s, s.begin():
        s.add(Course(id=5, name="stats-101"))
    store(db, "a", {(H, "gpu:0", "m", 5): Cell(0.6 * KWH), (H, "cpu", "m", 5): Cell(0.2 * KWH, estimated=True),
                    (H, "gpu:0", IDLE, 0): Cell(0.2 * KWH), (H, BUSY_DEVICE, "m", 5): Cell(busy_seconds=600.0)}, {H: 2})
    store(db, "b", {(H, "gpu:0", "m", 5): Cell(1.0 * KWH)}, {H: 1})
    since, until = window(None, "2026-11-30", "2026-11-30", datetime(2026, 12, 3, tzinfo=UTC))
    with session_factory(db)() as s:
        report = energy_report(s, since, until, parse_groups("model,course"), PRICES)
    by = {(r["model"], r["course"]): r for r in report["rows"]}
    m = by[("m", "stats-101")]
    assert m["kwh"] == pytest.approx(1.8) and m["measured_kwh"] == pytest.approx(1.6)
    assert m["estimated_kwh"] == pytest.approx(0.2) and m["estimated"] is True
    assert m["eur"] == pytest.approx(0.54) and m["kg_co2"] == pytest.approx(0.684)
    assert m["busy_seconds"] == pytest.approx(600.0)
    assert by[("idle", None)]["kwh"] == pytest.approx(0.2)
    assert report["total"]["kwh"] == pytest.approx(2.0) and report["total"]["eur"] == pytest.approx(0.6)
    assert report["peaks"] == [{"hour": "2026-11-30T09:00:00Z", "peak": 3}]
    assert report["devices"] == ["cpu", "gpu:0"]
    with session_factory(db)() as s:
        daily = energy_report(s, since, until, parse_groups("day"), PRICES)
    assert [(r["day"], r["kwh"]) for r in daily["rows"]] == [("2026-11-30", pytest.approx(2.0))]


def test_windows_and_groupings_are_checked() -> None:
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    assert window(7, None, None, now) == (now - timedelta(days=7), now)
    assert window(None, "2026-11-01", "2026-11-02", now) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    with pytest.raises(ValueError):
        window(0, None, None, now)
    with pytest.raises(ValueError):
        window(None, "2026-11-05", "2026-11-01", now)
    with pytest.raises(ValueError):
        window(None, "yesterday", None, now)
    assert parse_groups(None) == ("day", "model", "course")
    with pytest.raises(ValueError):
        parse_groups("user")
