"""CPU package energy from Intel RAPL (`/sys/class/powercap/intel-rapl:N/energy_uj`; AMD exposes the same).

The counter is in microjoules and wraps to zero at `max_energy_range_uj`; this source turns it into a
cumulative joule count that never goes backwards (one wrap between two samples is assumed: at a few
hundred watts the counter wraps after hours, samples come every few seconds). Only top-level zones
(`intel-rapl:0`, not the sub-zones `intel-rapl:0:0` of cores or DRAM inside a package) are read, so
nothing is counted twice. Since Linux 5.10 `energy_uj` is readable by root only; without permission
the sampler falls back to the estimate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flexi.energy.sources import Reading

POWERCAP = Path("/sys/class/powercap")
_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")


@dataclass
class _Zone:
    device: str
    energy: Path
    max_uj: int
    last_uj: int
    total_j: float = 0.0


def _zone_name(path: Path) -> str:
    try:
        return path.joinpath("name").read_text().strip() or path.name
    except OSError:
        return path.name


def unwrapped_delta(before: int, now: int, max_uj: int) -> int:
    """Microjoules between two counter values of a counter that wraps at `max_uj`."""
    return now - before if now >= before else now + max_uj - before


class RaplSource:
    """Measured CPU package energy; build with `open`, which returns None when nothing is readable."""

    def __init__(self, zones: list[_Zone]) -> None:
        self.zones = zones

    @classmethod
    def open(cls, root: Path = POWERCAP) -> RaplSource | None:
        zones: list[_Zone] = []
        try:
            candidates = sorted(p for p in root.iterdir() if _TOP_ZONE.match(p.name))
        except OSError:
            return None
        for path in candidates:
            try:
                now = int(path.joinpath("energy_uj").read_text())
                max_uj = int(path.joinpath("max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue  # not readable (root only since Linux 5.10): this zone is not measured
            zones.append(_Zone(f"cpu:{_zone_name(path)}", path / "energy_uj", max_uj, now))
        return cls(zones) if zones else None

    def read(self) -> list[Reading]:
        out = []
        for zone in self.zones:
            try:
                now = int(zone.energy.read_text())
            except (OSError, ValueError):
                continue  # a zone that went away misses this sample; the sampler does not bridge the gap
            zone.total_j += unwrapped_delta(zone.last_uj, now, zone.max_uj) / 1e6
            zone.last_uj = now
            out.append(Reading(zone.device, "rapl", joules=zone.total_j))
        return out

    def close(self) -> None:
        pass
