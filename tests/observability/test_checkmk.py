"""`flexi monitor checkmk`: Checkmk local-check lines computed from Flexi's Prometheus metrics (issue 14,
part 5) — the arithmetic on metrics made by prometheus-client itself, and the command against the real
server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from typer.testing import CliRunner

from flexi.cli.main import app
from flexi.observability.checkmk import Thresholds, checks, quantile, sample
from tests.conftest import MODEL, RunningServer

LINE = re.compile(r"^(?P<status>[0-3]) (?P<service>\S+) (?P<perf>\S+) (?P<text>.+)$")


def metrics_text(requests: int, errors: int, durations: list[float], waiting: int) -> str:
    """What Flexi's /metrics would say, written by prometheus-client (the same names and label sets)."""
    registry = CollectorRegistry()
    req = Counter("flexi_requests", "", ["model", "endpoint", "course", "status"], registry=registry)
    err = Counter("flexi_request_errors", "", ["model", "endpoint", "type"], registry=registry)
    hist = Histogram("flexi_request_duration_seconds", "", ["model", "endpoint"], registry=registry,
                     buckets=(0.5, 1, 5, 30, 120))
    queue = Gauge("flexi_queue_waiting", "", ["model"], registry=registry)
    loaded = Gauge("flexi_loaded_models", "", registry=registry)
    req.labels("m1", "chat", "none", "ok").inc(requests - errors)
    req.labels("m2", "chat", "none", "error").inc(errors)
    err.labels("m2", "chat", "timeout").inc(errors)
    for d in durations:
        hist.labels("m1", "chat").observe(d)
    queue.labels("m1").set(waiting // 2)
    queue.labels("m2").set(waiting - waiting // 2)
    loaded.set(2)
    return generate_latest(registry).decode()


def test_levels_come_from_the_thresholds_summed_over_models() -> None:
    now = sample(metrics_text(requests=10, errors=3, durations=[0.2] * 99 + [40], waiting=12))
    by_name = {c.service: c for c in checks(now, None, Thresholds())}
    assert by_name["Flexi_Queue"].status == 1 and "12 requests waiting" in by_name["Flexi_Queue"].text  # 12 ≥ 10
    assert by_name["Flexi_Errors"].status == 2 and "30.0 % of 10 requests" in by_name["Flexi_Errors"].text  # ≥ 20 %
    assert by_name["Flexi_Latency"].status == 0 and "p95=0.5;30;120" in by_name["Flexi_Latency"].line()  # one slow in 100
    assert by_name["Flexi_Models"].line().startswith("0 Flexi_Models loaded=2|memory=0 ")
    assert LINE.match(by_name["Flexi_Errors"].line()).group("perf") == "error_rate=30;5;20|requests=10"


def test_rates_and_percentiles_cover_the_interval_since_the_last_check() -> None:
    before = sample(metrics_text(requests=100, errors=0, durations=[0.2] * 100, waiting=0))
    now = sample(metrics_text(requests=110, errors=5, durations=[0.2] * 100 + [60] * 10, waiting=0))
    by_name = {c.service: c for c in checks(now, before)}
    assert "50.0 % of 10 requests failed since the last check" in by_name["Flexi_Errors"].text
    assert quantile(now, before, "flexi_request_duration_seconds", 0.95) == 120  # all ten new ones took 60 s
    assert quantile(now, None, "flexi_request_duration_seconds", 0.95) == 120  # 10 of 110 > 5 %: still the top bucket
    assert quantile(now, None, "flexi_request_duration_seconds", 0.5) == 0.5
    assert by_name["Flexi_Latency"].status == 2  # the p95 bucket bound, 120 s, reaches the 120 s crit level
    restarted = sample(metrics_text(requests=3, errors=0, durations=[0.2] * 3, waiting=0))  # counters went back
    assert "0.0 % of 3 requests" in {c.service: c for c in checks(restarted, now)}["Flexi_Errors"].text


def backends_text(failures: int) -> str:
    """/metrics with three remote backends: one up, one half-open, one open (gauges as the collector writes them)."""
    registry = CollectorRegistry()
    up = Gauge("flexi_backend_up", "", ["backend"], registry=registry)
    circuit = Gauge("flexi_backend_circuit_state", "", ["backend"], registry=registry)
    in_flight = Gauge("flexi_backend_in_flight", "", ["backend"], registry=registry)
    failed = Counter("flexi_backend_failures", "", ["backend", "reason"], registry=registry)
    for name, is_up, state, busy in (("gpu1", 1, 0, 3), ("gpu2", 0, 1, 1), ("vllm-a", 0, 2, 0)):
        up.labels(name).set(is_up)
        circuit.labels(name).set(state)
        in_flight.labels(name).set(busy)
    failed.labels("vllm-a", "connect").inc(failures)
    failed.labels("vllm-a", "probe").inc(1)
    return generate_latest(registry).decode()


def test_each_backend_is_a_service_ok_up_warn_half_open_crit_open() -> None:
    before = sample(backends_text(failures=2))
    now = sample(backends_text(failures=5))
    by_name = {c.service: c for c in checks(now, before)}
    assert by_name["Flexi_Backend_gpu1"].line() == ("0 Flexi_Backend_gpu1 in_flight=3|failures=0 up, circuit closed, "
                                                    "3 requests in flight, 0 failures since the last check")
    assert by_name["Flexi_Backend_gpu2"].status == 1 and "circuit half-open" in by_name["Flexi_Backend_gpu2"].text
    assert by_name["Flexi_Backend_vllm-a"].status == 2
    assert LINE.match(by_name["Flexi_Backend_vllm-a"].line()).group("perf") == "in_flight=0|failures=3"
    assert "3 failures since the server started" in {c.service: c for c in checks(before, None)}["Flexi_Backend_vllm-a"].text
    down_but_closed = sample(backends_text(0).replace('flexi_backend_circuit_state{backend="gpu2"} 1.0',
                                                      'flexi_backend_circuit_state{backend="gpu2"} 0.0'))
    assert {c.service: c for c in checks(down_but_closed, None)}["Flexi_Backend_gpu2"].status == 2  # a failing probe
    assert not [c for c in checks(sample(metrics_text(1, 0, [0.1], 0)), None) if c.service.startswith("Flexi_Backend")]


def run(server: RunningServer, state: Path, host: str | None = None) -> list[re.Match[str]]:
    result = CliRunner().invoke(app, ["monitor", "checkmk", "--state", str(state)],
                                env={"FLEXI_HOST": host or server.host, "FLEXI_API_KEY": None, "LANG": "en_US.UTF-8"})
    assert result.exit_code == 0, result.output
    lines = [LINE.match(line) for line in result.stdout.splitlines()]
    assert all(lines), result.stdout
    return lines  # type: ignore[return-value]


@pytest.mark.e2e
def test_the_command_reads_the_real_servers_metrics_and_keeps_its_state(server: RunningServer, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                   "options": {"num_predict": 2}}, timeout=120).raise_for_status()
    first = {m.group("service"): m for m in run(server, state)}
    assert set(first) == {"Flexi_Queue", "Flexi_Errors", "Flexi_Latency", "Flexi_Models"}
    assert "since the server started" in first["Flexi_Errors"].group("text") and state.exists()
    assert int(re.search(r"loaded=(\d+)", first["Flexi_Models"].group("perf")).group(1)) >= 1
    httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                   "options": {"num_predict": 2}}, timeout=120).raise_for_status()
    second = {m.group("service"): m for m in run(server, state)}
    assert "of 1 requests failed since the last check" in second["Flexi_Errors"].group("text")


def test_an_unreachable_server_is_one_crit_line(server: RunningServer, tmp_path: Path) -> None:
    (line,) = run(server, tmp_path / "s.json", host="127.0.0.1:9")
    assert line.group("status") == "2" and line.group("service") == "Flexi" and "not reachable" in line.group("text")
