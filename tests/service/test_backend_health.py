"""The circuit breaker of a remote backend (closed → open → half-open → closed) on a fake clock, and the
health probes of each backend kind over httpx's mock transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from flexi.config import BackendConfig
from flexi.service.backend_health import BackendHealth
from flexi.service.backend_probe import Prober, engine_queue, probe, probe_url
from flexi.service.remote import RemoteEngine


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _health(threshold: int = 3, cooldown: float = 30.0) -> tuple[BackendHealth, FakeClock]:
    clock = FakeClock()
    return BackendHealth(threshold, cooldown, clock=clock, wall=lambda: 1.7e9), clock


def test_the_circuit_opens_after_threshold_failures_in_a_row() -> None:
    health, _ = _health()
    health.failed("connect", "a")
    health.failed("timeout", "b")
    assert health.circuit == "closed" and health.admit() and health.up
    health.succeeded()  # a success in between starts the count again
    health.failed("http_5xx", "c")
    health.failed("http_5xx", "d")
    assert health.circuit == "closed"
    health.failed("garbage", "e")
    assert health.circuit == "open" and not health.admit() and not health.up
    assert health.failures == {"connect": 1, "timeout": 1, "http_5xx": 2, "garbage": 1}
    assert health.last_error == "e" and health.remaining() == 30.0


def test_half_open_after_the_cooldown_lets_one_trial_through() -> None:
    health, clock = _health(threshold=2, cooldown=10)
    health.failed("connect", "x")
    health.failed("connect", "x")
    clock.now += 9.5
    assert health.circuit == "open" and health.remaining() == pytest.approx(0.5) and not health.admit()
    clock.now += 0.5
    assert health.circuit == "half-open"
    assert health.admit()  # the trial
    assert not health.admit() and not health.admit()  # everyone else waits for its verdict
    health.release()  # the trial was cancelled: no verdict, the next one may try
    assert health.admit()
    health.succeeded()
    assert health.circuit == "closed" and health.consecutive == 0 and health.admit() and health.admit()


def test_a_failed_trial_opens_the_circuit_for_another_cooldown() -> None:
    health, clock = _health(threshold=3, cooldown=10)
    for _ in range(3):
        health.failed("cut", "x")
    clock.now += 10
    assert health.admit()
    health.failed("timeout", "slow")  # one failure is enough in half-open
    assert health.circuit == "open" and health.remaining() == 10.0
    clock.now += 10
    assert health.circuit == "half-open"


def test_failures_of_requests_sent_before_it_opened_do_not_extend_the_cooldown() -> None:
    health, clock = _health(threshold=1, cooldown=10)
    health.failed("connect", "x")
    clock.now += 6
    health.failed("connect", "late")
    assert health.remaining() == pytest.approx(4.0)


def test_failing_probes_count_like_failing_requests_and_a_good_one_closes_what_probes_opened() -> None:
    health, clock = _health(threshold=3, cooldown=30)
    health.probed(False, "health probe: HTTP 503")
    assert health.circuit == "closed" and not health.up and health.last_checked == 1.7e9  # one failure is no trip
    health.probed(False, "health probe: HTTP 503")
    health.probed(False, "health probe: HTTP 503")
    assert health.circuit == "open" and health.failures == {"probe": 3}
    assert health.last_error == "health probe: HTTP 503"
    clock.now += 15
    health.probed(True)  # probes opened it (e.g. llama-server reloading): a good probe closes it early
    assert health.circuit == "closed" and health.up


def test_a_good_probe_does_not_overrule_failing_requests() -> None:
    """Health endpoints often pass while generation fails (Ollama's /api/version always answers): a circuit
    that failing requests opened stays open for its cooldown, whatever the probe says."""
    health, clock = _health(threshold=3, cooldown=30)
    for message in "abc":
        health.failed("http_5xx", message)
    assert health.circuit == "open"
    clock.now += 15
    health.probed(True)
    assert health.circuit == "open" and not health.admit()
    clock.now += 16
    health.probed(True)  # the cooldown is over: a good probe may close it, as a good trial would
    assert health.circuit == "closed"
    health.failed("http_5xx", "a")
    health.failed("http_5xx", "b")
    health.probed(True)  # a good probe does not forgive a closed circuit's failing requests
    health.failed("http_5xx", "c")
    assert health.circuit == "open"


def test_admit_says_who_holds_the_trial() -> None:
    health, clock = _health(threshold=1, cooldown=1)
    assert health.admit() == "pass"
    health.failed("connect", "refused")
    clock.now += 2
    assert health.admit() == "trial" and health.admit() is None  # only the holder may release it
    health.release()
    assert health.admit() == "trial"


def test_threshold_zero_turns_the_breaker_off() -> None:
    health, _ = _health(threshold=0)
    for _ in range(10):
        health.failed("connect", "x")
    health.probed(False, "down")
    assert health.circuit == "closed" and health.admit()
    assert not health.up  # the probe's verdict is still shown
    assert health.failures == {"connect": 10, "probe": 1}


def _engine(kind: str, url: str, api_key: str | None = None, max_concurrency: int = 8) -> RemoteEngine:
    return RemoteEngine(BackendConfig(name="e", url=url, kind=kind, models=["m"], api_key=api_key,  # type: ignore[arg-type]
                                      max_concurrency=max_concurrency), health=BackendHealth(3, 30))


def _probe(engine: RemoteEngine, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await probe(engine, client)

    asyncio.run(run())


@pytest.mark.parametrize("kind, url, path", [
    ("llamacpp", "http://gpu:8080/v1", "/health"),
    ("vllm", "http://gpu:8000/v1", "/health"),
    ("openai", "https://llm.example.eu/v1", "/v1/models"),
    ("ollama", "http://gpu:11434", "/api/version"),
    ("flexi", "http://flexi2:8000", "/api/version"),
])
def test_each_kind_is_probed_where_it_documents_health(kind: str, url: str, path: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}) if request.url.path == path else httpx.Response(404)

    engine = _engine(kind, url, api_key="sk-1")
    engine.health.probed(False, "was down")
    _probe(engine, handler)
    assert seen[0].url.path == path and seen[0].headers["authorization"] == "Bearer sk-1"
    assert probe_url(engine.config).endswith(path)
    assert engine.health.circuit == "closed" and engine.health.up


@pytest.mark.parametrize("answer", [httpx.Response(503, text="loading model"), httpx.ConnectError("refused"),
                                    httpx.ReadTimeout("slow")])
def test_failing_probes_open_the_circuit(answer: httpx.Response | Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    engine = _engine("llamacpp", "http://gpu:8080/v1")
    _probe(engine, handler)
    assert engine.health.circuit == "closed" and not engine.health.up  # down, but one probe is no trip
    _probe(engine, handler)
    _probe(engine, handler)
    assert engine.health.circuit == "open" and not engine.health.up
    assert engine.health.last_error is not None and engine.health.last_error.startswith("health probe: ")


@pytest.mark.parametrize("status", [404, 405, 429, 501])
def test_a_probe_answer_without_a_verdict_changes_nothing(status: int) -> None:
    """No health endpoint behind this URL (a proxy forwarding only /v1, a gateway without GET /models) or a
    busy engine: the probe has no verdict, and the requests decide."""
    engine = _engine("openai", "http://gateway.example/v1")
    for _ in range(5):
        _probe(engine, lambda request: httpx.Response(status))
    assert engine.health.circuit == "closed" and engine.health.up and engine.health.failures == {}
    assert engine.health.probe_ok is None and engine.health.last_checked is not None


VLLM_METRICS = """# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="a"} 4.0
vllm:num_requests_running{model_name="b"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="a"} 7.0
"""
LLAMACPP_METRICS = """# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 3
"""


def test_the_engines_own_queue_is_read_from_its_metrics() -> None:
    assert engine_queue(VLLM_METRICS, "vllm") == (7, 5)
    assert engine_queue(LLAMACPP_METRICS, "llamacpp") == (3, 2)
    assert engine_queue("# nothing here\n", "vllm") is None
    assert engine_queue("not { prometheus", "vllm") is None
    assert engine_queue(VLLM_METRICS, "ollama") is None


def test_the_engine_queue_becomes_an_extra_load_term_and_absent_metrics_count_zero() -> None:
    body = {"/health": (200, ""), "/metrics": (200, VLLM_METRICS)}

    def handler(request: httpx.Request) -> httpx.Response:
        status, text = body.get(request.url.path, (404, ""))
        return httpx.Response(status, text=text)

    engine = _engine("vllm", "http://gpu:8000/v1")
    _probe(engine, handler)
    assert (engine.health.engine_waiting, engine.health.engine_running) == (7, 5)
    assert engine.load == 7 + 5  # nothing of Flexi's runs there: all five running are someone else's
    body["/metrics"] = (404, "")  # llama-server without --metrics, or metrics switched off
    _probe(engine, handler)
    assert engine.load == 0


def test_the_prober_probes_every_backend_each_round_until_stopped() -> None:
    hits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hits.append(request.url.host)
        return httpx.Response(500)

    engines = [_engine("ollama", f"http://{host}:11434") for host in ("a", "b")]

    async def run() -> None:
        prober = Prober(lambda: engines, interval=0.05,  # type: ignore[arg-type, return-value]
                        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        prober.start()
        await asyncio.sleep(0.12)
        await prober.stop()
        count = len(hits)
        await asyncio.sleep(0.1)
        assert len(hits) == count  # stopped

    asyncio.run(run())
    assert hits.count("a") >= 2 and hits.count("b") >= 2
    assert all(e.health.circuit == "open" for e in engines)
    off = Prober(lambda: engines, interval=0)  # type: ignore[arg-type, return-value]
    off.start()  # FLEXI_BACKEND_HEALTH_INTERVAL=0: no probes
    assert off._task is None

