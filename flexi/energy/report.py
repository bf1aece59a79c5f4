"""Energy reports from the stored hourly aggregates: kWh, € and kg CO2 per day, week, model and course.

One function serves GET /admin/energy, `flexi energy` and the admin dashboard's charts, so the three
always agree. Every replica's rows are added up. "measured" and "estimated" energy are reported apart
(`estimated_kwh`: from configured watts, not from a meter); the total is their sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flexi.db.models import Course, EnergyHour, EnergyPeak, iso_z
from flexi.energy.sampler import BUSY_DEVICE

GROUPS = ("day", "week", "model", "course")
IDLE_LABEL = "idle"
MAX_DAYS = 3660
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Prices:
    eur_per_kwh: float
    co2_g_per_kwh: float


def _moment(value: str, end: bool) -> datetime:
    """An ISO date (whole day: `to` includes it) or date-time; naive means UTC."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1) if end else day, time(), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not a date like 2026-11-01 or 2026-11-01T12:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window(days: int | None, start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) from `from`/`to` (dates or date-times), else the last `days` days (default 30)."""
    if start is not None or end is not None:
        until = _moment(end, True) if end else now
        since = _moment(start, False) if start else until - timedelta(days=days or 30)
    else:
        if days is not None and not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days must be between 1 and {MAX_DAYS}")
        until, since = now, now - timedelta(days=days or 30)
    if since >= until:
        raise ValueError("`from` must lie before `to`")
    return since, until


def parse_groups(value: str | Sequence[str] | None) -> tuple[str, ...]:
    parts = value.split(",") if isinstance(value, str) else list(value or ())
    groups = tuple(dict.fromkeys(p.strip() for p in parts if p.strip())) or ("day", "model", "course")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown grouping {unknown[0][:20]!r}; use {', '.join(GROUPS)} (comma separated)")
    return groups


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def energy_report(s: Session, since: datetime, until: datetime, groups: Sequence[str], prices: Prices) -> dict[str, Any]:
    rows = list(s.scalars(select(EnergyHour).where(EnergyHour.hour >= since, EnergyHour.hour < until)))
    course_ids = {r.course_id for r in rows if r.course_id}
    names = dict(s.execute(select(Course.id, Course.name).where(Course.id.in_(course_ids))).all()) if course_ids else {}
    sums: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        values = {"day": r.hour.date().isoformat(), "week": _week(r.hour),
                  "model": r.model or IDLE_LABEL,
                  "course": (names.get(r.course_id) or f"#{r.course_id}") if r.course_id else None}
        acc = sums.setdefault(tuple(values[g] for g in groups), [0.0, 0.0, 0.0])
        if r.device == BUSY_DEVICE:
            acc[2] += r.busy_seconds
        elif r.estimated:
            acc[1] += r.joules
        else:
            acc[0] += r.joules
    out = [_row(dict(zip(groups, key)), measured, estimated, busy, prices)
           for key, (measured, estimated, busy) in sums.items()]
    out.sort(key=lambda row: tuple("" if row[g] is None else str(row[g]) for g in groups))
    measured = sum(r.joules for r in rows if r.device != BUSY_DEVICE and not r.estimated)
    estimated = sum(r.joules for r in rows if r.device != BUSY_DEVICE and r.estimated)
    busy = sum(r.busy_seconds for r in rows if r.device == BUSY_DEVICE)
    return {"from": iso_z(since), "to": iso_z(until), "by": list(groups),
            "price_eur_per_kwh": prices.eur_per_kwh, "co2_g_per_kwh": prices.co2_g_per_kwh,
            "total": _row({}, measured, estimated, busy, prices), "rows": out,
            "devices": sorted({r.device for r in rows if r.device != BUSY_DEVICE}),
            "peaks": peaks(s, since, until)}


def _row(keys: dict[str, Any], measured_j: float, estimated_j: float, busy: float, prices: Prices) -> dict[str, Any]:
    kwh = (measured_j + estimated_j) / J_PER_KWH
    return {**keys, "kwh": round(kwh, 6), "measured_kwh": round(measured_j / J_PER_KWH, 6),
            "estimated_kwh": round(estimated_j / J_PER_KWH, 6), "eur": round(kwh * prices.eur_per_kwh, 4),
            "kg_co2": round(kwh * prices.co2_g_per_kwh / 1000, 4), "busy_seconds": round(busy, 3),
            "estimated": estimated_j > 0}


def peaks(s: Session, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Peak concurrent requests per hour, summed over replicas (an upper bound of the service's peak)."""
    total: dict[datetime, int] = {}
    for hour, peak in s.execute(select(EnergyPeak.hour, EnergyPeak.peak)
                                .where(EnergyPeak.hour >= since, EnergyPeak.hour < until)).all():
        total[hour] = total.get(hour, 0) + peak
    return [{"hour": iso_z(hour), "peak": peak} for hour, peak in sorted(total.items())]
