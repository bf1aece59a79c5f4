"""Active health probes of remote engines, every FLEXI_BACKEND_HEALTH_INTERVAL seconds.

Each kind is asked what it documents for health: llama-server and vLLM `GET /health` (llama-server says
503 while it loads its model), an OpenAI-compatible service `GET /v1/models` (with the api key: a wrong key
shows here, before a person's request fails), Ollama and another Flexi `GET /api/version`. A good probe
closes an open circuit, a failing one opens it (`BackendHealth.probed`). vLLM and llama-server also
publish their own queue in Prometheus format at `/metrics` (llama-server only with `--metrics`); when it
answers, the waiting and running requests there become an extra load term in least-loaded routing
(work other clients or other Flexi replicas put on the engine). Absent metrics count as 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from flexi.config import BackendConfig
from flexi.service.backend_health import BackendHealth

log = logging.getLogger("flexi.remote")

#: Seconds a probe may take at most (a backend's own, shorter `timeout` wins).
PROBE_TIMEOUT = 5.0
#: The engine's metrics: (waiting, running) sample names per kind.
ENGINE_QUEUE = {"vllm": ("vllm:num_requests_waiting", "vllm:num_requests_running"),
                "llamacpp": ("llamacpp:requests_deferred", "llamacpp:requests_processing")}


class Probed(Protocol):
    """What a probe needs of a backend (a `RemoteEngine`)."""

    config: BackendConfig
    health: BackendHealth


def server_root(url: str) -> str:
    """The engine's root for an OpenAI base URL (…/v1 → …): /health and /metrics live there."""
    return url.removesuffix("/v1")


def probe_url(config: BackendConfig) -> str:
    if config.kind in ("llamacpp", "vllm"):
        return server_root(config.url) + "/health"
    if config.kind == "openai":
        return config.url + "/models"  # the OpenAI base URL, usually …/v1
    return config.url + "/api/version"


def engine_queue(text: str, kind: str) -> tuple[int, int] | None:
    """(waiting, running) from an engine's Prometheus exposition, summed over its label sets; None when
    the kind publishes none or the text holds neither."""
    names = ENGINE_QUEUE.get(kind)
    if names is None:
        return None
    totals = {name: 0.0 for name in names}
    found = False
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in totals and math.isfinite(s.value):
                    totals[s.name] += s.value
                    found = True
    except (ValueError, IndexError, KeyError, TypeError):  # a page that is not the exposition format
        return None
    if not found:
        return None
    return max(0, int(totals[names[0]])), max(0, int(totals[names[1]]))


#: Probe answers that say nothing about the engine's health: the path does not exist behind this URL (a
#: proxy forwarding only /v1, a gateway without GET /models) or the engine is busy (429). Requests decide.
NO_VERDICT = frozenset({404, 405, 429, 501})

async def probe(engine: Probed, client: httpx.AsyncClient) -> None:
    """Probe one backend and report the result to its health. `client` is the probes' own: the backend's
    connection pool may be full of long answers, and a probe must not wait behind them and call a busy
    engine dead."""
    config, health = engine.config, engine.health
    timeout = min(PROBE_TIMEOUT, config.timeout)
    headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"} if config.api_key else {}
    try:
        resp = await client.get(probe_url(config), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        kind = "did not answer in time" if isinstance(exc, httpx.TimeoutException) else f"unreachable ({type(exc).__name__})"
        _verdict(engine, False, f"health probe: {kind}")
        return
    if resp.status_code in NO_VERDICT:  # no health endpoint behind this URL (a proxy, a gateway), or busy
        _verdict(engine, None)
        return
    if resp.status_code >= 400:
        _verdict(engine, False, f"health probe: HTTP {resp.status_code}")
        return
    _verdict(engine, True)
    if config.kind in ENGINE_QUEUE:
        queue = None
        with contextlib.suppress(httpx.HTTPError):
            metrics = await client.get(server_root(config.url) + "/metrics", headers=headers, timeout=timeout)
            if metrics.status_code == 200:
                queue = engine_queue(metrics.text, config.kind)
        health.engine_waiting, health.engine_running = queue or (0, 0)


def _verdict(engine: Probed, ok: bool | None, error: str | None = None) -> None:
    health = engine.health
    was = health.circuit
    health.probed(ok, error)
    if health.circuit != was:
        log.warning("backend %s: circuit %s after a health probe%s", engine.config.name, health.circuit,
                    f" ({error})" if error else "")


class Prober:
    """The background task probing every backend `engines()` returns (read each round, so a changed backend
    list is probed from the next round on)."""

    def __init__(self, engines: Callable[[], Sequence[Probed]], interval: float,
                 client: httpx.AsyncClient | None = None) -> None:
        self.engines = engines
        self.interval = interval
        self.client = client or httpx.AsyncClient(follow_redirects=False)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="flexi-backend-probes")

    async def round(self) -> None:
        """Probe all backends at once (one slow backend does not delay the others' verdicts)."""
        await asyncio.gather(*(probe(engine, self.client) for engine in self.engines()), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:  # never let the probes die: routing would keep stale verdicts
                log.exception("backend health probes failed")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.aclose()
