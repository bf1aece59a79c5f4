"""Power sources at their boundaries: a fake sysfs tree for RAPL, a fake `pynvml` for NVML, /proc/stat."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flexi.energy.estimate import EstimatedSource, HostCpuTime
from flexi.energy.nvml import NvmlSource
from flexi.energy.rapl import RaplSource, unwrapped_delta


def _zone(root: Path, name: str, label: str, energy: int, max_uj: int) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_rapl_reads_top_level_packages_and_survives_the_wrap_around(tmp_path: Path) -> None:
    package = _zone(tmp_path, "intel-rapl:0", "package-0", 999_000_000, 1_000_000_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5, 1_000_000_000)  # a sub-zone inside the package: not counted twice
    (tmp_path / "intel-rapl:0" / "intel-rapl:0:0").mkdir()
    source = RaplSource.open(tmp_path)
    assert source is not None
    assert [r.joules for r in source.read()] == [0.0]
    (package / "energy_uj").write_text("500000000\n")  # wrapped: 1 J to the top, then 500 J
    (reading,) = source.read()
    assert reading.device == "cpu:package-0" and reading.source == "rapl" and reading.measured
    assert reading.joules == pytest.approx(501.0)
    (package / "energy_uj").write_text("700000000\n")
    assert source.read()[0].joules == pytest.approx(701.0)
    assert unwrapped_delta(10, 4, 16) == 10


def test_rapl_is_absent_without_powercap_or_when_unreadable(tmp_path: Path) -> None:
    assert RaplSource.open(tmp_path / "missing") is None
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 1, 10)
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()  # reading it fails like a root-only file does for others
    assert RaplSource.open(tmp_path) is None


class FakeNvml:
    """The functions of `pynvml` the source calls, with two GPUs."""

    def __init__(self, count: int = 2, fail_init: bool = False) -> None:
        self.count, self.fail_init, self.shut = count, fail_init, False

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Any:
        return f"handle{i}"

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return 250_000 if handle == "handle0" else 70_500  # milliwatts

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        return SimpleNamespace(gpu=87 if handle == "handle0" else 0, memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        return SimpleNamespace(used=30 * 2**30, total=80 * 2**30, free=50 * 2**30)


def test_nvml_reports_power_utilisation_and_memory_per_gpu() -> None:
    fake = FakeNvml()
    source = NvmlSource.open(fake)
    assert source is not None
    first, second = source.read()
    assert (first.device, first.source, first.watts, first.utilisation) == ("gpu:0", "nvml", 250.0, 0.87)
    assert (first.memory_used, first.memory_total) == (30 * 2**30, 80 * 2**30)
    assert (second.device, second.watts, second.utilisation) == ("gpu:1", 70.5, 0.0)
    source.close()
    assert fake.shut


def test_no_gpu_source_without_driver_or_gpus() -> None:
    assert NvmlSource.open(FakeNvml(fail_init=True)) is None
    empty = FakeNvml(count=0)
    assert NvmlSource.open(empty) is None and empty.shut


def test_the_estimate_follows_host_cpu_time(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    cpu = HostCpuTime(stat)
    stat.write_text("cpu  160 0 160 760 120 0 0 0 0 0\n")  # 200 jiffies, 80 of them idle or iowait
    source = EstimatedSource(50.0, 150.0, cpu, lambda: 1.0)
    (reading,) = source.read()
    assert reading.device == "cpu" and reading.source == "estimate" and not reading.measured and reading.mean
    assert reading.watts == pytest.approx(50.0 + 100.0 * 0.6)


def test_the_estimate_falls_back_to_the_busy_share_without_proc_stat(tmp_path: Path) -> None:
    source = EstimatedSource(50.0, 150.0, HostCpuTime(tmp_path / "none"), lambda: 0.25)
    assert source.read()[0].watts == pytest.approx(75.0)


def test_host_cpu_time_keeps_its_last_figure_until_the_next_tick(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  0 0 0 100 0 0 0 0\n")
    cpu = HostCpuTime(stat)
    stat.write_text("cpu  50 0 0 150 0 0 0 0\n")
    assert cpu() == pytest.approx(0.5)
    assert cpu() == pytest.approx(0.5)  # no jiffy in between
    stat.write_text("cpu  50 0 0 250 0 0 0 0\n")
    assert cpu() == pytest.approx(0.0)
