"""/metrics on a real server: real requests of both dialects move the counters; who may read it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.access_helpers import ServerDB
from tests.conftest import MODEL, RunningServer, start_server, stop_server
from tests.metrics_helpers import parse, total

Samples = list[tuple[str, dict[str, str], float]]


def _scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    r = httpx.get(url + "/metrics", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")  # Prometheus' text format
    return parse(r.text)


def _counts(s: Samples, endpoint: str) -> tuple[float, ...]:
    return (total(s, "flexi_requests_total", model=MODEL, endpoint=endpoint, status="ok"),
            total(s, "flexi_time_to_first_token_seconds_count", model=MODEL),
            total(s, "flexi_generated_tokens_total", model=MODEL),
            total(s, "flexi_prompt_tokens_total", model=MODEL),
            total(s, "flexi_request_duration_seconds_count", model=MODEL, endpoint=endpoint))


def test_both_dialects_are_counted_once_each(server: RunningServer, http: httpx.Client) -> None:
    before = _scrape(server.url)
    r = http.post("/api/chat", json={"model": MODEL, "stream": False, "options": {"num_predict": 4, "temperature": 0},
                                     "messages": [{"role": "user", "content": "Say hi"}]})
    assert r.status_code == 200, r.text
    chat_out = r.json()["eval_count"]
    middle = _scrape(server.url)
    r = http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 4, "temperature": 0,
                                                "messages": [{"role": "user", "content": "Say hello"}]})
    assert r.status_code == 200, r.text
    openai_out = r.json()["usage"]["completion_tokens"]
    after = _scrape(server.url)

    ok, ttft, out, prompt, duration = (b - a for a, b in zip(_counts(before, "/api/chat"), _counts(middle, "/api/chat")))
    assert (ok, duration) == (1, 1)
    assert ttft == 1 and out == chat_out and prompt > 0
    ok, ttft, out, prompt, duration = (b - a for a, b in zip(_counts(middle, "/v1/chat/completions"),
                                                             _counts(after, "/v1/chat/completions")))
    assert (ok, duration) == (1, 1)
    assert ttft == 1 and out == openai_out and prompt > 0
    assert total(after, "flexi_requests_total", model=MODEL, endpoint="/api/chat") == \
        total(middle, "flexi_requests_total", model=MODEL, endpoint="/api/chat")  # the second request only once
    assert total(after, "flexi_http_responses_total", endpoint_class="inference", status_class="2xx") >= \
        total(before, "flexi_http_responses_total", endpoint_class="inference", status_class="2xx") + 2
    assert total(after, "flexi_loaded_models") >= 1
    assert total(after, "flexi_model_memory_bytes", model=MODEL) > 0
    assert total(after, "flexi_queue_capacity", model=MODEL) >= 1


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, ServerDB]]:
    srv = start_server(tmp_path_factory.mktemp("metrics-auth") / "home", {"FLEXI_AUTH": "on", "FLEXI_ADMINS": "boss"})
    db = ServerDB(srv.home)
    try:
        yield srv, db
    finally:
        db.close()
        stop_server(srv)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_with_auth_on_only_admins_read_the_metrics(campus: tuple[RunningServer, ServerDB]) -> None:
    srv, db = campus
    student = db.add_key(db.add_user("stud-metrics"))[1]
    boss = db.add_user("boss")  # admin through FLEXI_ADMINS
    admin_key = db.add_key(boss)[1]
    scraper = db.add_key(boss, scopes=["admin"])[1]  # what a Prometheus job would hold
    inference_only = db.add_key(boss, scopes=["inference"])[1]
    assert httpx.get(srv.url + "/metrics").status_code == 401
    assert httpx.get(srv.url + "/metrics", headers=_bearer(student)).status_code == 403
    assert httpx.get(srv.url + "/metrics", headers=_bearer(inference_only)).status_code == 403
    for key in (admin_key, scraper):
        assert total(_scrape(srv.url, _bearer(key)), "flexi_loaded_models") >= 0
    refused = total(_scrape(srv.url, _bearer(scraper)), "flexi_http_responses_total", endpoint_class="admin",
                    status_class="4xx")
    assert refused >= 3  # the refusals above are counted, though they never reached a route


def test_switched_off_there_is_no_metrics_route(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "home", {"FLEXI_METRICS": "off"})
    try:
        assert httpx.get(srv.url + "/metrics").status_code == 404
        assert httpx.get(srv.url + "/api/version").status_code == 200
    finally:
        stop_server(srv)


def test_kv_cache_use_follows_the_runner(server: RunningServer, http: httpx.Client) -> None:
    """While a request runs its prompt holds KV cells; once it ends they stay as a reusable prefix."""
    body = {"model": MODEL, "prompt": "Count from one to fifty: one, two, three,", "stream": True,
            "options": {"num_predict": 48, "temperature": 0}}
    with http.stream("POST", "/api/generate", json=body) as r:
        lines = r.iter_lines()
        next(lines)  # the first token: the request holds its slot now
        during = _scrape(server.url)
        final = [line for line in lines if line][-1]
    prompt_tokens = httpx.Response(200, content=final).json()["prompt_eval_count"]
    after = _scrape(server.url)
    capacity = total(during, "flexi_kv_cache_capacity_cells", model=MODEL)
    assert capacity >= 2048
    assert total(during, "flexi_kv_cache_cells", model=MODEL, held_by="running") >= prompt_tokens
    assert total(during, "flexi_kv_cache_usage_ratio", model=MODEL) > 0
    assert total(after, "flexi_kv_cache_cells", model=MODEL, held_by="running") == 0
    assert total(after, "flexi_kv_cache_usage_ratio", model=MODEL) == 0
    assert total(after, "flexi_kv_cache_cells", model=MODEL, held_by="prefix_cache") >= prompt_tokens
