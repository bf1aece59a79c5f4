"""NVIDIA GPUs through NVML (`nvidia-ml-py`, module `pynvml`): power, utilisation and memory per GPU.

`pynvml` is imported only when the sampler starts, and a missing library, a host without the NVIDIA
driver or without GPUs simply means no GPU source (CPU hosts run Flexi without it). The module is a
boundary Flexi does not own: tests pass a fake module object with the same functions.
"""

from __future__ import annotations

import logging
from typing import Any

from flexi.energy.sources import Reading

log = logging.getLogger("flexi.energy")


def _load() -> Any | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


class NvmlSource:
    """Every GPU NVML sees; build with `open`, which returns None without a driver or GPUs."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self.nvml = nvml
        self.handles = handles

    @classmethod
    def open(cls, nvml: Any | None = None) -> NvmlSource | None:
        nvml = nvml if nvml is not None else _load()
        if nvml is None:
            return None
        try:
            nvml.nvmlInit()
        except Exception:  # noqa: BLE001 (NVMLError_LibraryNotFound, _DriverNotLoaded, …: no GPU here)
            return None
        try:
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001
            log.warning("NVML is present but lists no usable GPU", exc_info=True)
            handles = []
        if not handles:
            nvml.nvmlShutdown()
            return None
        return cls(nvml, handles)

    def read(self) -> list[Reading]:
        out = []
        for i, handle in enumerate(self.handles):
            try:
                watts = self.nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # milliwatts
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
                memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:  # noqa: BLE001 (a GPU fell off the bus: it misses this sample)
                log.warning("reading GPU %d through NVML failed", i, exc_info=True)
                continue
            out.append(Reading(f"gpu:{i}", "nvml", watts=watts, utilisation=util, memory_used=int(memory.used),
                               memory_total=int(memory.total)))
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
