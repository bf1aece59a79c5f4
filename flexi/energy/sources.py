"""What a power source reports, behind one small protocol.

A source reads, for each of its devices, either the power right now (watts, as NVML gives it) or a
cumulative energy counter (joules, as RAPL gives it); the sampler integrates the one and differences the
other. `source` says where a figure comes from: "nvml" and "rapl" are measured, "estimate" is computed
from configured watts and is labelled as such in every report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ESTIMATE = "estimate"


@dataclass(frozen=True)
class Reading:
    """One device at one moment."""

    device: str  # "cpu", "cpu:package-0", "gpu:0": bounded by the hardware, so safe as a metric label
    source: str  # "nvml" | "rapl" | "estimate"
    watts: float | None = None  # power now (integrated by the sampler, trapezoid rule)
    mean: bool = False  # `watts` is already the mean since this source's previous reading (the estimate)
    joules: float | None = None  # a cumulative counter (the sampler takes differences)
    utilisation: float | None = None  # 0..1, GPUs only
    memory_used: int | None = None  # bytes, GPUs only
    memory_total: int | None = None

    @property
    def measured(self) -> bool:
        return self.source != ESTIMATE


class PowerSource(Protocol):
    """A family of devices (NVIDIA GPUs, CPU packages, or the estimate); `read` may block briefly (sysfs,
    NVML), so the sampler calls it off the event loop."""

    def read(self) -> list[Reading]: ...

    def close(self) -> None: ...
