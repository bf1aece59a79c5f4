"""deploy/grafana/flexi.json asks only for metrics Flexi exports, and shows what operators need."""

from __future__ import annotations

import json
import re
from pathlib import Path

from flexi.observability.metrics import Metrics
from tests.metrics_helpers import parse
from tests.observability.test_metrics import FakeBackends, FakeScheduler

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "flexi.json"
METRIC = re.compile(r"\b(flexi_[a-z_]+)")


def _exported() -> set[str]:
    """Every sample name Flexi's /metrics can show (each observation made once, the scheduler faked)."""
    metrics = Metrics()
    metrics.watch(FakeScheduler())
    metrics.watch_backends(FakeBackends())
    metrics.generation(model="m", endpoint="/api/chat", course_id=1, status="error", error="timeout", prompt_tokens=1,
                       output_tokens=2, ttft=0.1, tpot=0.1, duration=0.2, queue_wait=0.0)
    metrics.embedding(model="m", endpoint="/api/embed", course_id=None, status="ok", error=None, tokens=3)
    metrics.response("inference", 200)
    return {name for name, _, _ in parse(metrics.exposition().decode())}


def test_every_panel_queries_metrics_flexi_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported()
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert exprs and all(p["targets"] for p in dashboard["panels"])
    for title, expr in exprs:
        names = METRIC.findall(expr)
        assert names, f"{title}: {expr} names no Flexi metric"
        unknown = set(names) - exported
        assert not unknown, f"{title}: {sorted(unknown)} are not exported"
    for variable in dashboard["templating"]["list"]:
        assert set(METRIC.findall(variable["definition"])) <= exported


def test_the_dashboard_covers_traffic_errors_latency_tokens_queues_and_memory() -> None:
    text = " ".join(t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"])
    for needed in ("rate(flexi_requests_total", "flexi_request_errors_total",
                   "histogram_quantile(0.95, sum by (le, model) (rate(flexi_time_to_first_token_seconds_bucket",
                   "histogram_quantile(0.95, sum by (le, model) (rate(flexi_request_duration_seconds_bucket",
                   "rate(flexi_generated_tokens_total", "flexi_queue_waiting", "flexi_model_memory_bytes",
                   "flexi_backend_circuit_state", "flexi_backend_failures_total"):
        assert needed in text, needed
    ids = [p["id"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))
