"""Prometheus metrics: what Flexi counts, with labels whose number of values stays bounded.

Requests are observed once, where the access gate meters them (`AccessGate.meter` and friends), so
both dialects and course assistants count the same way and exactly once. What the scheduler holds
right now (loaded models, their memory, queue depth, runner restarts) is read when Prometheus scrapes,
through a collector over a `SchedulerView`, instead of being copied into gauges on every change; the
remote backends' health (up, circuit, in flight, failures by reason) likewise through a `BackendView`, and
power, energy and GPUs through an `EnergyView` (the energy sampler, flexi/energy/, which sits above this
module and implements it).

Labels are model, endpoint, course (the billed course's id), backend (configured by an admin) and status,
error type or failure reason; never a user.
Label values a client can influence are capped: beyond `max_models` / `max_courses` / `max_endpoints`
distinct values per process, new ones are reported as "other", so no client can grow the series
count without bound.

Several worker processes: when `PROMETHEUS_MULTIPROC_DIR` is set in the environment before Flexi
starts (prometheus-client reads it at import), the values are kept in that directory and `/metrics`
aggregates every process's files (`MultiProcessCollector`, as prometheus-client documents it). The
directory must be empty at start. Otherwise each app has its own registry (no global state: tests run
several apps in one process).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

OTHER = "other"
NONE = "none"
MAX_MODELS = 64
MAX_COURSES = 256
MAX_ENDPOINTS = 32
MAX_ERROR_TYPES = 32
MAX_BACKENDS = 64
CONTENT_TYPE = CONTENT_TYPE_LATEST

# seconds; generation on CPUs is slow, on GPUs fast: the buckets cover both
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
TPOT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def multiprocess_dir() -> str | None:
    """The directory prometheus-client keeps multi-process values in, when configured."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


class BoundedLabel:
    """Keeps the first `limit` distinct values of a label; later new values become "other"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        text = value if value else NONE
        if text in self._seen:
            return text
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(text)
        return text


def endpoint_of(path: str) -> str:
    """The route a path belongs to: a course assistant's slug is not part of the label."""
    if path.startswith("/assistants/"):
        parts = path.split("/")  # ["", "assistants", slug, rest...]
        return "/".join(["", "assistants", "{slug}", *parts[3:]])
    return path


@dataclass(frozen=True)
class LoadedModel:
    """What the scheduler reports about one loaded model at scrape time."""

    name: str
    memory_bytes: int
    replicas: int
    active: int
    kv_running_cells: int = 0  # KV cells held by running requests (as of the last request start or end)
    kv_held_cells: int = 0  # … and in all, with prefixes kept for reuse
    kv_capacity_cells: int = 0  # context per slot × slots × replicas


@dataclass(frozen=True)
class QueueState:
    model: str
    running: int
    waiting: int
    capacity: int


class SchedulerView(Protocol):
    """The scheduler as the collector reads it (implemented over `ModelManager` in the server)."""

    def loaded_models(self) -> list[LoadedModel]: ...

    def queue_states(self) -> list[QueueState]: ...

    def runner_restarts(self) -> dict[str, int]: ...


class SchedulerCollector(Collector):
    """Gauges read from the scheduler when Prometheus scrapes (nothing to update on the request path)."""

    def __init__(self, view: SchedulerView, model_label: BoundedLabel) -> None:
        self.view = view
        self.model = model_label

    def collect(self) -> Iterator[Metric]:
        models = self.view.loaded_models()
        count = GaugeMetricFamily("flexi_loaded_models", "Models loaded in this process's runners now.")
        count.add_metric([], len(models))
        yield count
        memory = GaugeMetricFamily("flexi_model_memory_bytes", "Estimated memory of a loaded model's runners.",
                                   labels=["model"])
        replicas = GaugeMetricFamily("flexi_model_replicas", "Runner processes of a loaded model.", labels=["model"])
        active = GaugeMetricFamily("flexi_model_active_requests", "Requests a loaded model runs now.", labels=["model"])
        kv_cells = GaugeMetricFamily("flexi_kv_cache_cells", "KV-cache cells in use, held by running requests or "
                                     "kept as a reusable prompt prefix (as of the last request start or end).",
                                     labels=["model", "held_by"])
        kv_capacity = GaugeMetricFamily("flexi_kv_cache_capacity_cells", "KV-cache cells of a loaded model's runners.",
                                        labels=["model"])
        kv_usage = GaugeMetricFamily("flexi_kv_cache_usage_ratio", "Share of the KV cache held by running requests "
                                     "(0–1; prefixes kept for reuse not counted, as vLLM's kv_cache_usage_perc).",
                                     labels=["model"])
        for m in _summed(models, self.model):
            memory.add_metric([m.name], m.memory_bytes)
            replicas.add_metric([m.name], m.replicas)
            active.add_metric([m.name], m.active)
            if m.kv_capacity_cells:
                kv_cells.add_metric([m.name, "running"], m.kv_running_cells)
                kv_cells.add_metric([m.name, "prefix_cache"], m.kv_held_cells - m.kv_running_cells)
                kv_capacity.add_metric([m.name], m.kv_capacity_cells)
                kv_usage.add_metric([m.name], m.kv_running_cells / m.kv_capacity_cells)
        yield from (memory, replicas, active, kv_cells, kv_capacity, kv_usage)
        running = GaugeMetricFamily("flexi_queue_running", "Requests holding one of a model's slots.", labels=["model"])
        waiting = GaugeMetricFamily("flexi_queue_waiting", "Requests waiting in a model's fair queue (queue depth).",
                                    labels=["model"])
        capacity = GaugeMetricFamily("flexi_queue_capacity", "Slots of a model (replicas × parallel sequences).",
                                     labels=["model"])
        merged: dict[str, list[int]] = {}
        for q in self.view.queue_states():
            row = merged.setdefault(self.model(q.model), [0, 0, 0])
            row[0] += q.running
            row[1] += q.waiting
            row[2] += q.capacity
        for name, (run, wait, cap) in merged.items():
            running.add_metric([name], run)
            waiting.add_metric([name], wait)
            capacity.add_metric([name], cap)
        yield from (running, waiting, capacity)
        restarts = CounterMetricFamily("flexi_runner_restarts", "Runner processes found stopped unexpectedly and "
                                       "replaced (the next request starts a fresh one).", labels=["model"])
        totals: dict[str, int] = {}
        for name, n in self.view.runner_restarts().items():
            label = self.model(name)
            totals[label] = totals.get(label, 0) + n
        for name, n in totals.items():
            restarts.add_metric([name], n)
        yield restarts


@dataclass(frozen=True)
class BackendState:
    """One remote backend's health at scrape time. `circuit`: 0 closed, 1 half-open, 2 open; `failures`:
    counts since start by reason (a fixed set: connect, timeout, http_5xx, garbage, cut, error, probe)."""

    name: str
    up: bool
    circuit: int
    in_flight: int
    failures: dict[str, int]


class BackendView(Protocol):
    """The remote backends as the collector reads them (implemented by `RemoteBackends`)."""

    def backend_states(self) -> list[BackendState]: ...


class BackendCollector(Collector):
    """flexi_backend_* read from the backends' health when Prometheus scrapes."""

    def __init__(self, view: BackendView) -> None:
        self.view = view
        self.backend = BoundedLabel(MAX_BACKENDS)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("flexi_backend_up", "1 when a remote backend's circuit is closed and its last health "
                               "probe (if any) was good, else 0.", labels=["backend"])
        circuit = GaugeMetricFamily("flexi_backend_circuit_state", "A remote backend's circuit breaker: 0 closed, "
                                    "1 half-open (one trial request), 2 open (no requests).", labels=["backend"])
        in_flight = GaugeMetricFamily("flexi_backend_in_flight", "Requests running at or waiting in Flexi for a "
                                      "remote backend.", labels=["backend"])
        failures = CounterMetricFamily("flexi_backend_failures", "Failures of a remote backend by reason (connect, "
                                       "timeout, http_5xx, garbage, cut, error, probe); refused requests (4xx) are "
                                       "not counted.", labels=["backend", "reason"])
        for b in self.view.backend_states():
            name = self.backend(b.name)
            up.add_metric([name], 1 if b.up else 0)
            circuit.add_metric([name], b.circuit)
            in_flight.add_metric([name], b.in_flight)
            for reason, n in sorted(b.failures.items()):
                failures.add_metric([name, reason], n)
        yield from (up, circuit, in_flight, failures)
class GpuState(Protocol):
    """One GPU's last reading (flexi.energy.sources.Reading has these fields)."""

    device: str
    utilisation: float | None
    memory_used: int | None
    memory_total: int | None


class EnergyView(Protocol):
    """The energy sampler as the collector reads it. Devices are hardware ("cpu", "cpu:package-0",
    "gpu:0"), so their number is bounded by the machine."""

    def power(self) -> list[tuple[str, str, float]]:
        """(device, source, watts in the last interval); source is nvml, rapl or estimate."""
        ...

    def energy_joules(self) -> dict[str, float]: ...

    def gpus(self) -> Sequence[GpuState]: ...


class EnergyCollector(Collector):
    """Power, energy and GPU gauges read from the energy sampler at scrape time."""

    def __init__(self, view: EnergyView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        power = GaugeMetricFamily("flexi_power_watts", "Power of a device over the last sample interval (source: "
                                  "nvml or rapl = measured, estimate = from configured watts).", labels=["device", "source"])
        for device, source, watts in self.view.power():
            power.add_metric([device, source], watts)
        yield power
        energy = CounterMetricFamily("flexi_energy_joules", "Energy a device used since this process started.",
                                     labels=["device"])
        for device, joules in self.view.energy_joules().items():
            energy.add_metric([device], joules)
        yield energy
        gpus = list(self.view.gpus())
        if not gpus:
            return  # CPU hosts have no GPU series at all
        util = GaugeMetricFamily("flexi_gpu_utilization_ratio", "Share of time a GPU's kernels ran (NVML), 0 to 1.",
                                 labels=["device"])
        used = GaugeMetricFamily("flexi_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=["device"])
        total = GaugeMetricFamily("flexi_gpu_memory_total_bytes", "GPU memory in all (NVML).", labels=["device"])
        for gpu in gpus:
            if gpu.utilisation is not None:
                util.add_metric([gpu.device], gpu.utilisation)
            if gpu.memory_used is not None:
                used.add_metric([gpu.device], gpu.memory_used)
            if gpu.memory_total is not None:
                total.add_metric([gpu.device], gpu.memory_total)
        yield from (util, used, total)


def _summed(models: Iterable[LoadedModel], label: BoundedLabel) -> list[LoadedModel]:
    """Loaded models by label value (models beyond the cap add up under "other")."""
    out: dict[str, LoadedModel] = {}
    for m in models:
        name = label(m.name)
        prev = out.get(name)
        if prev is None:
            out[name] = m if name == m.name else dataclasses.replace(m, name=name)
        else:
            out[name] = LoadedModel(name, *(getattr(prev, f.name) + getattr(m, f.name)
                                            for f in dataclasses.fields(LoadedModel) if f.name != "name"))
    return list(out.values())


class Metrics:
    """Flexi's metrics for one app. Observation methods take plain values, so the gate needs no
    prometheus types; they cost a dictionary lookup and an addition each."""

    def __init__(self, *, max_models: int = MAX_MODELS, max_courses: int = MAX_COURSES,
                 max_endpoints: int = MAX_ENDPOINTS) -> None:
        self.model = BoundedLabel(max_models)
        self.course = BoundedLabel(max_courses)
        self.endpoint = BoundedLabel(max_endpoints)
        self.error_type = BoundedLabel(MAX_ERROR_TYPES)
        self.multiprocess = multiprocess_dir()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("flexi_requests", "Generation requests that reached the access gate, by outcome "
                                "(ok, error, cancelled, rejected).", ["model", "endpoint", "course", "status"], registry=r)
        self.errors = Counter("flexi_request_errors", "Generation and embedding requests that failed or were refused, "
                              "by error type (the API error code).", ["model", "endpoint", "type"], registry=r)
        self.ttft = Histogram("flexi_time_to_first_token_seconds", "From admission (queue wait and loading included) "
                              "to the first generated token.", ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.tpot = Histogram("flexi_time_per_output_token_seconds", "Time between output tokens after the first, "
                              "per request.", ["model"], buckets=TPOT_BUCKETS, registry=r)
        self.latency = Histogram("flexi_request_duration_seconds", "End-to-end time of a generation request, from "
                                 "admission to its last event.", ["model", "endpoint"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.queue_wait = Histogram("flexi_queue_wait_seconds", "Time a request waited in the fair queue for a slot.",
                                    ["model"], buckets=QUEUE_BUCKETS, registry=r)
        self.prompt_tokens = Counter("flexi_prompt_tokens", "Prompt (input) tokens processed.", ["model", "course"],
                                     registry=r)
        self.output_tokens = Counter("flexi_generated_tokens", "Output tokens generated.", ["model", "course"],
                                     registry=r)
        self.embeddings = Counter("flexi_embedding_requests", "Embedding requests that reached the access gate, by "
                                  "outcome.", ["model", "course", "status"], registry=r)
        self.embedding_tokens = Counter("flexi_embedding_tokens", "Input tokens embedded.", ["model", "course"],
                                        registry=r)
        self.responses = Counter("flexi_http_responses", "Every HTTP answer, by endpoint class (inference, admin, "
                                 "manage, me, public) and status class (2xx … 5xx): refusals before a request reaches "
                                 "the gate (401, 403, 404, 400) included.", ["endpoint_class", "status_class"],
                                 registry=r)
        self._scrape_extra: list[Collector] = []
        if self.multiprocess is None:
            for make in (ProcessCollector, PlatformCollector, GCCollector):
                make(registry=r)  # type: ignore[operator]

    # --- observation (called by the access gate) --------------------------------------
    def generation(self, *, model: str, endpoint: str, course_id: int | None, status: str, error: str | None,
                   prompt_tokens: int, output_tokens: int, ttft: float | None, tpot: float | None, duration: float,
                   queue_wait: float | None) -> None:
        """One generation request ended (however it ended)."""
        m, e, c = self.model(model), self.endpoint(endpoint_of(endpoint)), self.course(_course(course_id))
        self.requests.labels(m, e, c, status).inc()
        if error is not None:
            self.errors.labels(m, e, self.error_type(error)).inc()
        if prompt_tokens:
            self.prompt_tokens.labels(m, c).inc(prompt_tokens)
        if output_tokens:
            self.output_tokens.labels(m, c).inc(output_tokens)
        if ttft is not None:
            self.ttft.labels(m).observe(ttft)
        if tpot is not None:
            self.tpot.labels(m).observe(tpot)
        if queue_wait is not None:
            self.queue_wait.labels(m).observe(queue_wait)
        self.latency.labels(m, e).observe(duration)

    def response(self, endpoint_class: str, status: int) -> None:
        """One HTTP answer (the access middleware counts them all)."""
        self.responses.labels(endpoint_class, f"{status // 100}xx").inc()

    def refused(self, *, model: str, endpoint: str, course_id: int | None, status: str, error: str | None) -> None:
        """A request that ended before generating (a quota refusal, a prompt that failed to render)."""
        m, e = self.model(model), self.endpoint(endpoint_of(endpoint))
        self.requests.labels(m, e, self.course(_course(course_id)), status).inc()
        if error is not None:
            self.errors.labels(m, e, self.error_type(error)).inc()

    def embedding(self, *, model: str, endpoint: str, course_id: int | None, status: str, error: str | None,
                  tokens: int) -> None:
        m, c = self.model(model), self.course(_course(course_id))
        self.embeddings.labels(m, c, status).inc()
        if error is not None:
            self.errors.labels(m, self.endpoint(endpoint_of(endpoint)), self.error_type(error)).inc()
        if tokens:
            self.embedding_tokens.labels(m, c).inc(tokens)

    # --- exposition ----------------------------------------------------------------------
    def watch(self, view: SchedulerView) -> None:
        """Report the scheduler's live state (loaded models, queues, restarts) at each scrape."""
        collector = SchedulerCollector(view, self.model)
        if self.multiprocess is None:
            self.registry.register(collector)
        else:
            self._scrape_extra.append(collector)  # this process's scheduler; counters come from the files

    def watch_backends(self, view: BackendView) -> None:
        """Report the remote backends' health at each scrape (this process's view, as for the scheduler)."""
        self._watch(BackendCollector(view))

    def watch_energy(self, view: EnergyView) -> None:
        """Report power, energy and GPUs (this process's sampler) at each scrape."""
        self._watch(EnergyCollector(view))

    def _watch(self, collector: Collector) -> None:
        if self.multiprocess is None:
            self.registry.register(collector)
        else:
            self._scrape_extra.append(collector)

    def exposition(self) -> bytes:
        """The text exposition format of every metric (all processes' in multi-process mode)."""
        if self.multiprocess is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess)
        for collector in self._scrape_extra:
            registry.register(collector)
        return generate_latest(registry)


def _course(course_id: int | None) -> str | None:
    return None if course_id is None else str(course_id)

