"""Writing the sampler's hourly cells into `energy_hours` / `energy_peaks`, and the retention purge.

A replica only ever touches its own rows (`replica`), so adding to an hour's row is a read and an
update in one transaction, on SQLite and PostgreSQL alike, without locking out other replicas.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from flexi.db.engine import session_factory
from flexi.db.models import EnergyHour, EnergyPeak, utcnow
from flexi.energy.sampler import Cell, CellKey


def hour_of(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def store(engine: Engine, replica: str, cells: dict[CellKey, Cell], peaks: dict[int, int]) -> None:
    """Add `cells` and `peaks` to this replica's rows (one transaction: all or nothing)."""
    if not cells and not peaks:
        return
    with session_factory(engine)() as s, s.begin():
        for (hour, device, model, course), cell in cells.items():
            _add(s, replica, hour, device, model, course, cell)
        for hour, peak in peaks.items():
            row = s.get(EnergyPeak, (hour_of(hour), replica))
            if row is None:
                s.add(EnergyPeak(hour=hour_of(hour), replica=replica, peak=peak))
            else:
                row.peak = max(row.peak, peak)


def _add(s: Session, replica: str, hour: int, device: str, model: str, course: int, cell: Cell) -> None:
    key = (hour_of(hour), replica, device, model[:255], course)
    row = s.get(EnergyHour, key)
    if row is None:
        s.add(EnergyHour(hour=key[0], replica=replica, device=device, model=key[3], course_id=course,
                         joules=cell.joules, busy_seconds=cell.busy_seconds, estimated=cell.estimated))
    else:
        row.joules += cell.joules
        row.busy_seconds += cell.busy_seconds
        row.estimated = row.estimated or cell.estimated


def purge(engine: Engine, retention_days: int, now: datetime | None = None) -> int:
    """Delete hours older than the retention (every replica's: the retention is the service's)."""
    before = (now or utcnow()) - timedelta(days=retention_days)
    with session_factory(engine)() as s, s.begin():
        removed = s.execute(delete(EnergyHour).where(EnergyHour.hour < before)).rowcount or 0
        removed += s.execute(delete(EnergyPeak).where(EnergyPeak.hour < before)).rowcount or 0
    return removed


def hours(s: Session, since: datetime, until: datetime) -> list[EnergyHour]:
    return list(s.scalars(select(EnergyHour).where(EnergyHour.hour >= since, EnergyHour.hour < until)))
