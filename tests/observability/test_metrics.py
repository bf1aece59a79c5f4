"""The metrics module alone: bounded labels, the scheduler and backend collectors, exposition, several processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flexi.observability.metrics import (
    OTHER,
    BackendState,
    BoundedLabel,
    LoadedModel,
    Metrics,
    QueueState,
    endpoint_of,
)
from tests.metrics_helpers import label_values, parse, total

ROOT = Path(__file__).resolve().parents[2]


def test_a_bounded_label_keeps_its_first_values_and_collapses_the_rest() -> None:
    label = BoundedLabel(2)
    assert [label("a"), label("b"), label("c"), label("a"), label("d")] == ["a", "b", OTHER, "a", OTHER]
    assert label(None) == OTHER  # full: even "none" is a new value
    assert BoundedLabel(3)(None) == "none" and BoundedLabel(3)("") == "none"


def test_a_course_assistants_slug_never_becomes_a_label_value() -> None:
    assert endpoint_of("/assistants/Xy7-secret/chat") == "/assistants/{slug}/chat"
    assert endpoint_of("/v1/chat/completions") == "/v1/chat/completions"


def _generation(metrics: Metrics, model: str = "m", course_id: int | None = None, **kw: object) -> None:
    args: dict[str, object] = {"model": model, "endpoint": "/api/chat", "course_id": course_id, "status": "ok",
                               "error": None, "prompt_tokens": 5, "output_tokens": 3, "ttft": 0.2, "tpot": 0.05,
                               "duration": 0.4, "queue_wait": 0.01}
    metrics.generation(**{**args, **kw})  # type: ignore[arg-type]


def test_a_generation_is_counted_with_its_tokens_and_latencies() -> None:
    metrics = Metrics()
    _generation(metrics, course_id=7)
    _generation(metrics, status="error", error="runner_crashed", output_tokens=0, ttft=None, tpot=None)
    s = parse(metrics.exposition().decode())
    assert total(s, "flexi_requests_total", model="m", status="ok", course="7", endpoint="/api/chat") == 1
    assert total(s, "flexi_requests_total", model="m", status="error", course="none") == 1
    assert total(s, "flexi_request_errors_total", model="m", type="runner_crashed") == 1
    assert total(s, "flexi_prompt_tokens_total", model="m") == 10
    assert total(s, "flexi_generated_tokens_total", model="m") == 3
    assert total(s, "flexi_time_to_first_token_seconds_count", model="m") == 1
    assert total(s, "flexi_time_to_first_token_seconds_bucket", model="m", le="0.25") == 1
    assert total(s, "flexi_time_per_output_token_seconds_count", model="m") == 1
    assert total(s, "flexi_request_duration_seconds_count", model="m") == 2
    assert total(s, "flexi_queue_wait_seconds_count", model="m") == 2
    assert total(s, "process_cpu_seconds_total") > 0  # the process collectors come along


def test_http_answers_are_counted_by_status_class() -> None:
    metrics = Metrics()
    for status in (200, 204, 401, 403, 503):
        metrics.response("inference", status)
    s = parse(metrics.exposition().decode())
    assert total(s, "flexi_http_responses_total", endpoint_class="inference", status_class="2xx") == 2
    assert total(s, "flexi_http_responses_total", status_class="4xx") == 2
    assert total(s, "flexi_http_responses_total", status_class="5xx") == 1


def test_model_and_course_labels_are_capped_so_clients_cannot_grow_the_series() -> None:
    metrics = Metrics(max_models=3, max_courses=2)
    for i in range(10):
        _generation(metrics, model=f"model-{i}", course_id=i)
    s = parse(metrics.exposition().decode())
    assert label_values(s, "flexi_requests_total", "model") == {"model-0", "model-1", "model-2", OTHER}
    assert label_values(s, "flexi_requests_total", "course") == {"0", "1", OTHER}
    assert total(s, "flexi_requests_total", model=OTHER) == 7
    assert total(s, "flexi_requests_total") == 10


class FakeScheduler:
    def __init__(self) -> None:
        self.models = [LoadedModel("a", 100, 1, 2), LoadedModel("b", 50, 2, 0), LoadedModel("c", 30, 1, 1)]
        self.queues = [QueueState("a", 2, 5, 4), QueueState("c", 1, 0, 2)]

    def loaded_models(self) -> list[LoadedModel]:
        return self.models

    def queue_states(self) -> list[QueueState]:
        return self.queues

    def runner_restarts(self) -> dict[str, int]:
        return {"a": 2}


def test_the_scheduler_is_read_at_scrape_time() -> None:
    metrics = Metrics(max_models=2)
    view = FakeScheduler()
    metrics.watch(view)
    s = parse(metrics.exposition().decode())
    assert total(s, "flexi_loaded_models") == 3
    assert total(s, "flexi_model_memory_bytes", model="a") == 100
    assert total(s, "flexi_model_memory_bytes", model=OTHER) == 30  # beyond the cap: summed under "other"
    assert total(s, "flexi_model_replicas", model="b") == 2
    assert total(s, "flexi_queue_waiting", model="a") == 5 and total(s, "flexi_queue_running", model="a") == 2
    assert total(s, "flexi_runner_restarts_total", model="a") == 2
    view.models = []  # unloaded: gone from the next scrape, no stale gauge
    s = parse(metrics.exposition().decode())
    assert total(s, "flexi_loaded_models") == 0 and not label_values(s, "flexi_model_memory_bytes", "model")


class FakeBackends:
    def __init__(self) -> None:
        self.states = [BackendState("gpu1", up=True, circuit=0, in_flight=3, failures={}),
                       BackendState("gpu2", up=False, circuit=2, in_flight=0, failures={"connect": 3, "probe": 1})]

    def backend_states(self) -> list[BackendState]:
        return self.states


def test_backend_health_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    view = FakeBackends()
    metrics.watch_backends(view)
    s = parse(metrics.exposition().decode())
    assert total(s, "flexi_backend_up", backend="gpu1") == 1 and total(s, "flexi_backend_up", backend="gpu2") == 0
    assert total(s, "flexi_backend_circuit_state", backend="gpu2") == 2
    assert total(s, "flexi_backend_in_flight", backend="gpu1") == 3
    assert total(s, "flexi_backend_failures_total", backend="gpu2", reason="connect") == 3
    assert label_values(s, "flexi_backend_failures_total", "reason") == {"connect", "probe"}
    view.states[1] = BackendState("gpu2", up=True, circuit=1, in_flight=1, failures={"connect": 3, "probe": 1})
    s = parse(metrics.exposition().decode())
    assert total(s, "flexi_backend_circuit_state", backend="gpu2") == 1 and total(s, "flexi_backend_up") == 2


WORKER = """
from flexi.observability.metrics import Metrics
m = Metrics()
m.generation(model="m", endpoint="/api/chat", course_id=None, status="ok", error=None, prompt_tokens=4,
             output_tokens=2, ttft=0.1, tpot=None, duration=0.3, queue_wait=None)
print(m.exposition().decode())
"""


def test_with_a_multiprocess_directory_every_workers_counts_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    outputs = [subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, check=True,
                              timeout=60).stdout for _ in range(2)]
    first, second = parse(outputs[0]), parse(outputs[1])
    assert total(first, "flexi_requests_total", model="m") == 1
    assert total(second, "flexi_requests_total", model="m") == 2  # the second worker sees the first one's too
    assert total(second, "flexi_generated_tokens_total", model="m") == 4
    assert total(second, "flexi_time_to_first_token_seconds_count", model="m") == 2
