"""Checkmk local checks from Flexi's Prometheus metrics (`flexi monitor checkmk`).

A data centre that watches its servers with Checkmk (as FLEXI at FernUniversität does) runs this from
the agent's `local/` directory once a minute. Each line is a local check: status (0 OK, 1 WARN, 2 CRIT,
3 UNKNOWN), service name, metrics as `name=value;warn;crit` joined by `|`, and a text. Counters and
histograms are cumulative, so rates and percentiles are computed against the previous run's sample
(kept in a small state file); the first run reports since the server started. Each remote backend gets
its own service, `Flexi_Backend_<name>`: OK while its circuit is closed and it is up, WARN half-open (a trial
request is deciding), CRIT down or open.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Thresholds:
    queue_warn: float = 10
    queue_crit: float = 50
    error_warn: float = 5.0  # percent of requests
    error_crit: float = 20.0
    latency_warn: float = 30.0  # seconds, p95 of the whole request
    latency_crit: float = 120.0
    gpu_util_warn: float = 90.0  # percent busy (NVML utilisation): a GPU at its limit makes requests wait
    gpu_util_crit: float = 98.0
    gpu_memory_warn: float = 90.0  # percent of the GPU's memory in use: the next model or KV cache may not fit
    gpu_memory_crit: float = 95.0


@dataclass(frozen=True)
class Check:
    status: int
    service: str
    metrics: tuple[tuple[str, float, float | None, float | None], ...]
    text: str

    def line(self) -> str:
        perf = "|".join(f"{n}={_num(v)}" + (f";{_num(w)};{_num(c)}" if w is not None else "") for n, v, w, c in self.metrics)
        return f"{self.status} {self.service} {perf or '-'} {self.text}"


def _num(value: float | None) -> str:
    return "" if value is None else (f"{value:.0f}" if float(value).is_integer() else f"{value:.4g}")


def _level(value: float, warn: float, crit: float) -> int:
    return 2 if value >= crit else 1 if value >= warn else 0


#: Per-backend figures and how several samples of one backend combine (worst state, summed load).
_BACKEND = {"flexi_backend_up": min, "flexi_backend_circuit_state": max, "flexi_backend_in_flight": sum,
            "flexi_backend_failures_total": sum}
GPU_SERIES = {"flexi_gpu_utilization_ratio": "util", "flexi_gpu_memory_used_bytes": "used",
              "flexi_gpu_memory_total_bytes": "total"}


def sample(text: str) -> dict[str, Any]:
    """The figures the checks need from one scrape: sums over models, histogram buckets by bound, each
    remote backend's health, and each GPU's utilisation and memory (present only where the server samples GPUs)."""
    sums: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_backend: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    gpus: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_bucket"):
                buckets[s.name][s.labels.get("le", "+Inf")] += s.value
            else:
                sums[s.name] += s.value
            if s.name in _BACKEND and "backend" in s.labels:
                per_backend[s.labels["backend"]][s.name].append(s.value)
            if s.name in GPU_SERIES and "device" in s.labels:
                gpus[s.labels["device"]][GPU_SERIES[s.name]] = s.value
    backends = {name: {metric: _BACKEND[metric](values) for metric, values in figures.items()}
                for name, figures in per_backend.items()}
    return {"sums": dict(sums), "buckets": {k: dict(v) for k, v in buckets.items()}, "backends": backends,
            "gpus": dict(gpus)}


def gpu_checks(now: dict[str, Any], limits: Thresholds) -> list[Check]:
    """One utilisation and one memory service per GPU (none on CPU hosts)."""
    out = []
    for device in sorted(now.get("gpus", {})):
        gpu = now["gpus"][device]
        name = "Flexi_GPU_" + "".join(c if c.isalnum() else "_" for c in device.removeprefix("gpu:"))
        if "util" in gpu:
            util = 100.0 * gpu["util"]
            out.append(Check(_level(util, limits.gpu_util_warn, limits.gpu_util_crit), f"{name}_Utilization",
                             (("util", util, limits.gpu_util_warn, limits.gpu_util_crit),),
                             f"{device} {util:.0f} % busy"))
        if gpu.get("total"):
            used = gpu.get("used", 0.0)
            share = 100.0 * used / gpu["total"]
            out.append(Check(_level(share, limits.gpu_memory_warn, limits.gpu_memory_crit), f"{name}_Memory",
                             (("mem_used_percent", share, limits.gpu_memory_warn, limits.gpu_memory_crit),
                              ("mem_used", used, None, None), ("mem_total", gpu["total"], None, None)),
                             f"{device} memory {used / 2**30:.1f} of {gpu['total'] / 2**30:.1f} GiB ({share:.0f} %)"))
    return out


def _delta(now: dict[str, Any], before: dict[str, Any] | None, name: str) -> float:
    value = now["sums"].get(name, 0.0)
    if before is not None and before["sums"].get(name, 0.0) <= value:  # a restarted server starts from zero
        value -= before["sums"].get(name, 0.0)
    return value


def quantile(now: dict[str, Any], before: dict[str, Any] | None, name: str, q: float) -> float | None:
    """The q-quantile of a histogram over the interval (upper bucket bound, as Prometheus' histogram_quantile
    without interpolation); None without observations, +inf when it lies beyond the largest bound."""
    current = now["buckets"].get(f"{name}_bucket", {})
    previous = (before or {}).get("buckets", {}).get(f"{name}_bucket", {})
    if previous and all(previous.get(le, 0.0) <= count for le, count in current.items()):
        current = {le: count - previous.get(le, 0.0) for le, count in current.items()}
    bounds = sorted(((math.inf if le == "+Inf" else float(le)), count) for le, count in current.items())
    total = bounds[-1][1] if bounds else 0.0
    if total <= 0:
        return None
    return next(bound for bound, count in bounds if count >= q * total)


def checks(now: dict[str, Any], before: dict[str, Any] | None, limits: Thresholds = Thresholds()) -> list[Check]:
    since = "since the last check" if before is not None else "since the server started"
    waiting = now["sums"].get("flexi_queue_waiting", 0.0)
    running = now["sums"].get("flexi_queue_running", 0.0)
    out = [Check(_level(waiting, limits.queue_warn, limits.queue_crit), "Flexi_Queue",
                 (("waiting", waiting, limits.queue_warn, limits.queue_crit), ("running", running, None, None)),
                 f"{waiting:.0f} requests waiting, {running:.0f} running")]
    requests = _delta(now, before, "flexi_requests_total")
    errors = _delta(now, before, "flexi_request_errors_total")
    share = 100.0 * errors / requests if requests else 0.0
    out.append(Check(_level(share, limits.error_warn, limits.error_crit), "Flexi_Errors",
                     (("error_rate", share, limits.error_warn, limits.error_crit), ("requests", requests, None, None)),
                     f"{share:.1f} % of {requests:.0f} requests failed {since}"))
    p95 = quantile(now, before, "flexi_request_duration_seconds", 0.95)
    ttft = quantile(now, before, "flexi_time_to_first_token_seconds", 0.95)
    if p95 is None:
        out.append(Check(0, "Flexi_Latency", (), f"no requests {since}"))
    else:
        shown = min(p95, 1e9)
        metrics: list[tuple[str, float, float | None, float | None]] = [("p95", shown, limits.latency_warn, limits.latency_crit)]
        if ttft is not None:
            metrics.append(("ttft_p95", min(ttft, 1e9), None, None))
        text = f"p95 request time {'over the largest bucket' if math.isinf(p95) else f'{p95:g} s'} {since}"
        out.append(Check(_level(p95, limits.latency_warn, limits.latency_crit), "Flexi_Latency", tuple(metrics), text))
    loaded = now["sums"].get("flexi_loaded_models", 0.0)
    memory = now["sums"].get("flexi_model_memory_bytes", 0.0)
    out.append(Check(0, "Flexi_Models", (("loaded", loaded, None, None), ("memory", memory, None, None)),
                     f"{loaded:.0f} models loaded, {memory / 2**30:.2f} GiB"))
    out.extend(backend_checks(now, before))
    return out + gpu_checks(now, limits)


_CIRCUIT = {0: "closed", 1: "half-open", 2: "open"}


def backend_checks(now: dict[str, Any], before: dict[str, Any] | None) -> list[Check]:
    """One service per remote backend: OK up and closed, WARN half-open, CRIT down or open."""
    out = []
    previous = (before or {}).get("backends", {})
    for name, b in sorted(now.get("backends", {}).items()):
        up = b.get("flexi_backend_up", 0.0) >= 1
        circuit = int(b.get("flexi_backend_circuit_state", 0.0))
        in_flight = b.get("flexi_backend_in_flight", 0.0)
        failures = b.get("flexi_backend_failures_total", 0.0)
        earlier = previous.get(name, {}).get("flexi_backend_failures_total", 0.0)
        if earlier <= failures:  # a restarted server starts from zero
            failures -= earlier
        status = 2 if circuit == 2 or (circuit == 0 and not up) else 1 if circuit == 1 else 0
        text = (f"{'up' if up else 'down'}, circuit {_CIRCUIT.get(circuit, circuit)}, {in_flight:.0f} requests in "
                f"flight, {failures:.0f} failures {'since the last check' if before is not None else 'since the server started'}")
        out.append(Check(status, f"Flexi_Backend_{name}", (("in_flight", in_flight, None, None),
                                                           ("failures", failures, None, None)), text))
    return out


def unreachable(reason: str) -> list[Check]:
    return [Check(2, "Flexi", (), f"Flexi not reachable: {reason}")]


def render(lines: Iterable[Check]) -> str:
    return "\n".join(c.line() for c in lines) + "\n"
