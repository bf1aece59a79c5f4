"""Model lifecycle like Ollama: keep_alive expiry, max loaded models, memory budget, scale to zero."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import MODEL, RunningServer, start_server, stop_server
from tests.server.test_guards_and_faults import _runner_pids

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def one_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("lifecycle") / "home",
                       {"FLEXI_MAX_LOADED_MODELS": "1", "FLEXI_KEEP_ALIVE": "10m"})
    httpx.post(srv.url + "/api/copy", json={"source": MODEL, "destination": "second"})
    yield srv
    stop_server(srv)


def _loaded(srv: RunningServer) -> list[str]:
    return [m["name"] for m in httpx.get(srv.url + "/api/ps").json()["models"]]


def _gen(srv: RunningServer, model: str, **extra: object) -> httpx.Response:
    return httpx.post(srv.url + "/api/generate", json={"model": model, "prompt": "Hi", "stream": False,
                                                       "options": {"num_predict": 1}, **extra}, timeout=120)


def test_max_loaded_models_evicts_the_idle_one(one_model_server: RunningServer) -> None:
    assert _gen(one_model_server, MODEL).status_code == 200
    assert _loaded(one_model_server) == [MODEL]
    first_pids = _runner_pids(one_model_server)
    assert _gen(one_model_server, "second").status_code == 200
    assert _loaded(one_model_server) == ["second:latest"]
    deadline = time.monotonic() + 30
    while set(first_pids) & set(_runner_pids(one_model_server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = _runner_pids(one_model_server)
    assert len(pids) == 1 and not set(pids) & set(first_pids)  # the evicted runner process is gone


def test_keep_alive_expiry_ends_the_runner(one_model_server: RunningServer) -> None:
    assert _gen(one_model_server, MODEL, keep_alive="1s").status_code == 200
    assert MODEL in _loaded(one_model_server)
    deadline = time.monotonic() + 30
    while _loaded(one_model_server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _loaded(one_model_server) == []
    while _runner_pids(one_model_server) and time.monotonic() < deadline + 30:
        time.sleep(0.1)
    assert _runner_pids(one_model_server) == []  # scale to zero: no process, no memory


def test_model_over_memory_budget_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_server(tmp_path_factory.mktemp("tiny-budget") / "home", {"FLEXI_MAX_MEMORY": str(50 * 1024**2)})
    try:
        r = _gen(srv, MODEL)
        assert r.status_code == 500
        assert "memory budget" in r.json()["error"]
        assert httpx.get(srv.url + "/api/tags").status_code == 200
    finally:
        stop_server(srv)


def test_memory_budget_evicts_to_fit(tmp_path_factory: pytest.TempPathFactory) -> None:
    # room for one SmolLM2 runner (~1.3 GiB estimated with 4 slots × 4096 ctx and the embedder's buffers) but not two
    srv = start_server(tmp_path_factory.mktemp("budget") / "home", {"FLEXI_MAX_MEMORY": str(2000 * 1024**2),
                                                                           "FLEXI_NUM_PARALLEL": "4"})
    try:
        httpx.post(srv.url + "/api/copy", json={"source": MODEL, "destination": "other"})
        assert _gen(srv, MODEL).status_code == 200
        assert _gen(srv, "other").status_code == 200
        assert _loaded(srv) == ["other:latest"]
    finally:
        stop_server(srv)


def test_client_leaving_during_load_leaves_no_stray_runner(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_server(tmp_path_factory.mktemp("leave") / "home", {"FLEXI_NUM_PARALLEL": "4"})
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            with c.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "Hi", "options": {"num_predict": 5}}) as r:
                for line in r.iter_lines():
                    break  # leave at the first line (the "loading" status, or the first token)
        deadline = time.monotonic() + 60
        while _loaded(srv) != [MODEL] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _loaded(srv) == [MODEL]  # the load finished and is tracked (memory budget, keep_alive)
        assert len(_runner_pids(srv)) == 1
        assert _gen(srv, MODEL).status_code == 200
        assert len(_runner_pids(srv)) == 1  # no second runner
    finally:
        stop_server(srv)
