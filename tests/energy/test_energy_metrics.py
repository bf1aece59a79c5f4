"""Power, energy and GPU series in /metrics, and the Checkmk GPU services computed from them."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from flexi.observability.checkmk import Thresholds, checks, sample
from flexi.observability.metrics import Metrics


@dataclass
class Gpu:
    device: str
    utilisation: float | None
    memory_used: int | None
    memory_total: int | None


class View:
    def __init__(self, gpus: list[Gpu]) -> None:
        self._gpus = gpus

    def power(self) -> list[tuple[str, str, float]]:
        return [("cpu", "estimate", 75.0)] + [(g.device, "nvml", 250.0) for g in self._gpus]

    def energy_joules(self) -> dict[str, float]:
        return {"cpu": 1500.0, **{g.device: 9000.0 for g in self._gpus}}

    def gpus(self) -> list[Gpu]:
        return self._gpus


def _exposition(view: View) -> str:
    metrics = Metrics()
    metrics.watch_energy(view)
    return metrics.exposition().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_power_and_energy_per_device_and_gpu_gauges_only_with_gpus() -> None:
    gib = 2**30
    values = _samples(_exposition(View([Gpu("gpu:0", 0.95, 60 * gib, 80 * gib), Gpu("gpu:1", 0.1, 78 * gib, 80 * gib)])))
    assert values[("flexi_power_watts", (("device", "cpu"), ("source", "estimate")))] == 75.0
    assert values[("flexi_power_watts", (("device", "gpu:1"), ("source", "nvml")))] == 250.0
    assert values[("flexi_energy_joules_total", (("device", "gpu:0"),))] == 9000.0
    assert values[("flexi_gpu_utilization_ratio", (("device", "gpu:0"),))] == 0.95
    assert values[("flexi_gpu_memory_used_bytes", (("device", "gpu:1"),))] == 78 * gib
    cpu_only = _exposition(View([]))
    assert "flexi_energy_joules_total" in cpu_only and "flexi_gpu_" not in cpu_only


def test_checkmk_reports_each_gpus_utilisation_and_memory_against_thresholds() -> None:
    gib = 2**30
    now = sample(_exposition(View([Gpu("gpu:0", 0.95, 60 * gib, 80 * gib), Gpu("gpu:1", 0.1, 78 * gib, 80 * gib)])))
    lines = {c.service: c for c in checks(now, None, Thresholds())}
    assert lines["Flexi_GPU_0_Utilization"].status == 1  # 95 % ≥ warn 90
    assert lines["Flexi_GPU_0_Memory"].status == 0  # 75 %
    assert lines["Flexi_GPU_1_Utilization"].status == 0
    assert lines["Flexi_GPU_1_Memory"].status == 2  # 97.5 % ≥ crit 95
    assert lines["Flexi_GPU_0_Utilization"].line().startswith("1 Flexi_GPU_0_Utilization util=95;90;98 ")
    assert "mem_used_percent=97.5;90;95" in lines["Flexi_GPU_1_Memory"].line()
    strict = {c.service: c.status for c in checks(now, None, Thresholds(gpu_util_warn=50, gpu_util_crit=94))}
    assert strict["Flexi_GPU_0_Utilization"] == 2
    assert not [c for c in checks(sample(_exposition(View([]))), None) if "GPU" in c.service]
