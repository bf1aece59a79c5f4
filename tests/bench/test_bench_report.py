"""`flexi bench` without a server: summaries, report formatting, energy metering, runner memory from /proc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flexi.bench import bench_report
from flexi.bench.bench import Measurement, build_prompt, parse_streams, summarize
from flexi.bench.loadtest import LoadTestError
from flexi.bench.power import PowerMeter
from flexi.bench.runner_rss import runner_memory
from flexi.energy.sources import Reading

NOT_MEASURED = {"measured": False, "joules": None, "per_device_j": {}, "sources": [], "reason": "no readable power source"}


def _m(streams: int, **kw: Any) -> Measurement:
    base: dict[str, Any] = {"ttft_s": 0.2, "latency_s": 1.0, "prompt_tokens": 100, "prompt_eval_s": 0.5,
                            "output_tokens": 50, "eval_s": 1.0}
    return Measurement(streams=streams, repetition=0, **{**base, **kw})


def _doc(energy: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    row = summarize([_m(2), _m(2, prompt_eval_s=0.25, eval_s=0.5, ttft_s=0.4)], [2.0], energy, 2)
    return {
        "started_at": "2026-01-01T10:00:00+00:00", "finished_at": "2026-01-01T10:01:00+00:00",
        "target": {"url": "http://127.0.0.1:11434", "local": True},
        "versions": {"flexi_client": "0.1.0", "flexi_server": "0.1.0", "llama_cpp_python": "0.3.36"},
        "machine": {"cpu_model": "Test CPU", "cpu_cores": 8, "cpu_cores_usable": 8, "ram_gib": 31.2,
                    "os": "Linux", "gpus": ["NVIDIA L4"]},
        "parameters": {"models": ["m|1"], "streams": [2], "prompt_tokens": 100, "output_tokens": 50, "repeat": 1},
        "results": [{"model": "m|1", "rows": [row], "requests": [], "memory": memory}],
    }


def test_summary_rates_come_from_server_counters():
    row = summarize([_m(2), _m(2, prompt_eval_s=0.25, eval_s=0.5, ttft_s=0.4), _m(2, status="timeout")],
                    [2.0], {**NOT_MEASURED}, 2)
    assert row["n"] == 3 and row["ok"] == 2 and row["errors"] == 1
    assert row["pp_tokens_per_s"] == pytest.approx((200 + 400) / 2)  # mean of 100/0.5 and 100/0.25
    assert row["tg_tokens_per_s"] == pytest.approx((50 + 100) / 2)
    assert row["tg_total_tokens_per_s"] == pytest.approx(100 / 2.0)  # 2 × 50 tokens over 2 s of wall time
    assert row["ttft_mean_s"] == pytest.approx(0.3)
    assert row["energy"]["j_per_1k_output_tokens"] is None and row["energy"]["j_per_1k_tokens"] is None


def test_energy_per_thousand_tokens_only_when_measured():
    energy = {"measured": True, "joules": 30.0, "per_device_j": {"cpu:package-0": 30.0}, "sources": ["rapl"],
              "reason": None}
    row = summarize([_m(1), _m(1)], [2.0], energy, 1)
    assert row["energy"]["j_per_1k_output_tokens"] == pytest.approx(30.0 * 1000 / 100)
    assert row["energy"]["j_per_1k_tokens"] == pytest.approx(30.0 * 1000 / 300)


def test_markdown_and_rows():
    doc = _doc({**NOT_MEASURED}, {"source": "runner_rss", "bytes": 512 * 2**20, "peak_bytes": 600 * 2**20,
                                  "estimate_bytes": 700 * 2**20})
    md = bench_report.markdown(doc)
    assert "| m\\|1 | 2 | 300.0 | 75.0 | 50.0 | 300 | 512 MiB (runner RSS) | not measurable | 0 |" in md
    assert "Test CPU, 8 cores (8 usable), 31.2 GiB RAM, NVIDIA L4" in md
    assert "llama.cpp (llama-cpp-python) 0.3.36" in md
    assert "Energy not measurable: no readable power source." in md
    [row] = bench_report.rows(doc, "nicht messbar")
    assert row["energy"] == "nicht messbar" and row["memory"] == "512 MiB (runner RSS)"


def test_measured_energy_and_estimated_memory_are_labelled():
    energy = {"measured": True, "joules": 5.0, "per_device_j": {"gpu:0": 5.0}, "sources": ["nvml"], "reason": None}
    doc = _doc(energy, {"source": "api_ps_estimate", "bytes": 700 * 2**20, "peak_bytes": None,
                        "estimate_bytes": 700 * 2**20})
    md = bench_report.markdown(doc)
    assert "| 700 MiB (estimate, /api/ps) | 50.0 J (nvml) | 0 |" in md  # 5 J for 100 output tokens
    assert "Energy not measurable" not in md


def test_failed_model_gets_a_row():
    doc = _doc({**NOT_MEASURED}, {})
    doc["results"] = [{"model": "gone", "rows": [], "requests": [], "memory": {}, "warmup_error": "model not found"}]
    assert "| gone | – | – | – | – | – | – | – | model not found |" in bench_report.markdown(doc)


def test_parse_streams():
    assert parse_streams("1, 4,4") == [1, 4]
    for bad in ("0", "a", "", "1,-2"):
        with pytest.raises(LoadTestError):
            parse_streams(bad)


def test_prompts_differ_from_the_first_token():
    a, b = build_prompt(32, "x1"), build_prompt(32, "x2")
    assert a.split()[0] != b.split()[0] and a.split()[1:] == b.split()[1:]  # no shared prefix to reuse
    assert 20 <= len(a.split()) <= 32


class _Counter:
    """A RAPL-like cumulative counter plus an NVML-like power reading and an estimate that must be ignored."""

    def __init__(self) -> None:
        self.j = 100.0

    def read(self) -> list[Reading]:
        self.j += 2.0
        return [Reading("cpu:package-0", "rapl", joules=self.j), Reading("gpu:0", "nvml", watts=10.0),
                Reading("cpu", "estimate", watts=99.0, mean=True)]

    def close(self) -> None:
        pass


def test_power_meter_differences_counters_and_integrates_watts():
    meter = PowerMeter([_Counter()], interval=0.01)
    meter.start()
    import time
    time.sleep(0.1)
    energy = meter.stop()
    assert energy.measured and energy.sources == ["nvml", "rapl"]
    assert energy.joules["cpu:package-0"] >= 4.0 and energy.joules["cpu:package-0"] % 2.0 == 0
    assert 0.5 <= energy.joules["gpu:0"] <= 10.0 * 1.0  # ~10 W over ~0.1 s
    assert "cpu" not in energy.joules  # the estimate is not a measurement


def test_power_meter_without_sources_is_not_measurable():
    meter = PowerMeter([])
    meter.start()
    energy = meter.stop()
    assert not energy.measured and energy.total_j is None and energy.to_dict()["joules"] is None


def _proc(root: Path, pid: int, ppid: int, cmd: list[str], rss_kib: int, fds: dict[str, str] | None = None) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "status").write_text(f"Name:\tpython\nPPid:\t{ppid}\nVmHWM:\t{rss_kib + 10} kB\nVmRSS:\t{rss_kib} kB\n")
    (d / "cmdline").write_bytes(b"\0".join(c.encode() for c in cmd) + b"\0")
    for name, target in (fds or {}).items():
        (d / "fd" / name).symlink_to(target)


def test_runner_memory_from_proc(tmp_path: Path):
    (tmp_path / "net").mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "net" / "tcp").write_text(
        header + "   0: 0100007F:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1\n")
    _proc(tmp_path, 10, 1, ["python", "-m", "flexi", "serve"], 50_000, {"3": "socket:[4242]"})
    runner = ["python", "-m", "flexi.engine.runner", "--model", "/h/models/blobs/sha256-aaa"]
    _proc(tmp_path, 11, 10, runner, 300_000)
    _proc(tmp_path, 12, 10, runner[:-1] + ["/h/models/blobs/sha256-bbb"], 200_000)
    _proc(tmp_path, 13, 99, runner, 999_000)  # another server's runner of the same model
    assert runner_memory(0x2CAA, "sha256-aaa", tmp_path) == {"rss_bytes": 300_000 * 1024,
                                                             "peak_rss_bytes": 300_010 * 1024, "runners": 1}
    assert runner_memory(0x2CAA, None, tmp_path)["rss_bytes"] == 500_000 * 1024
    assert runner_memory(0x2CAB, "sha256-aaa", tmp_path) is None  # nobody listens there


def test_llama_server_timings_are_used_when_the_stream_has_them() -> None:
    """llama-server's final chunk carries its own timings: exact rates, like Ollama's final chunk."""
    import asyncio

    import httpx

    from flexi.bench.bench import BenchConfig, measure

    chunks = ['{"choices":[{"text":"a","index":0}]}', '{"choices":[{"text":"b","index":0}]}',
              '{"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":2},'
              '"timings":{"prompt_n":29,"prompt_ms":100.0,"predicted_n":2,"predicted_ms":40.0}}', "[DONE]"]
    body = "".join(f"data: {c}\n\n" for c in chunks)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=body,
                                                                   headers={"content-type": "text/event-stream"}))

    async def run() -> object:
        async with httpx.AsyncClient(transport=transport) as client:
            return await measure(client, BenchConfig(url="http://peer", models=["m"], api="openai"), "m", "p", 2, 1, 0)

    m = asyncio.run(run())
    assert m.status == "ok" and m.rates == "server" and m.ttft_s is not None
    assert m.pp_rate == 290.0 and m.tg_rate == 50.0 and m.prompt_tokens == 29
    truncated = body.replace("data: [DONE]\n\n", "")
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=truncated))
    assert asyncio.run(run()).status != "ok"  # a stream cut before [DONE] is no measurement


def test_ctx_goes_into_the_request_and_is_checked() -> None:
    from flexi.bench.bench import BenchConfig, _request, check_config
    from flexi.bench.loadtest import LoadTestError

    _, body = _request("ollama", "m", "p", 8, 2048)
    assert body["options"]["num_ctx"] == 2048 and body["options"]["num_predict"] == 8
    assert "num_ctx" not in _request("ollama", "m", "p", 8)[1]["options"]
    check_config(BenchConfig(url="http://x", models=["m"], ctx=1024))
    for config, text in ((BenchConfig(url="http://x", models=["m"], ctx=100), "smaller than"),
                         (BenchConfig(url="http://x", models=["m"], ctx=4096, api="openai"), "needs --api ollama")):
        with pytest.raises(LoadTestError, match=text):
            check_config(config)
