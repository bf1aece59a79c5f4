"""Remote engines as backends: the models `[[backends]]` serve, and which engine runs each request.

A model served by remote engines has no GGUF here: it gets a `ModelRecord` of family "remote" so the
generation service, policies, quotas and model lists treat it like any other model. Each configured
backend has its own connection pool and a fair queue of `max_concurrency` slots, so requests beyond it
wait in Flexi (priorities, round-robin across people, per-person cap), not in the engine. Among the backends serving a model the least loaded goes first; when one fails
before the first token the next one takes the request (never after: a started answer is not repeated).
Each backend has a circuit breaker (`backend_health.py`, fed by requests and by the probes of
`backend_probe.py`): an open one gets no requests, and a model whose backends are all open answers 503
at once instead of queueing work for a dead engine.
The backend URL comes from the configuration only, never from a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from flexi.config import BackendConfig, Settings
from flexi.engine.remote import ollama_wire, openai_wire
from flexi.engine.remote.wire import KEEPALIVE_SECONDS, BackendFailed, BackendsDown
from flexi.engine.types import (
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    GenerationStats,
    ModelNotFound,
    RequestTimeout,
    StatusEvent,
    TextChunk,
    ThinkingChunk,
    ToolCalls,
)
from flexi.observability.metrics import BackendState
from flexi.scheduler.fair_queue import FairQueue, Ticket
from flexi.service.backend_health import CIRCUIT_CODES, OPEN, Admission, BackendHealth
from flexi.service.backend_probe import Prober
from flexi.service.backends import Backend, BackendSelector, Event
from flexi.store.gguf_meta import GGUFInfo
from flexi.store.names import InvalidModelName, ModelName, parse_model_name
from flexi.store.store import ModelRecord

log = logging.getLogger("flexi.remote")

OLLAMA_KINDS = ("ollama", "flexi")


class RemoteEngine:
    """One configured backend: its dialect, connections and concurrency limit.

    At most `max_concurrency` requests run at the engine; the others wait in Flexi's fair queue (priority
    classes, round-robin across people, the per-person cap, `max_queue`), as they would for a local model."""

    def __init__(self, config: BackendConfig, max_queue: int = 512, wait_limit: float = 600.0,
                 health: BackendHealth | None = None) -> None:
        self.config = config
        self.name = config.name
        self.health = health or BackendHealth()
        headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"} if config.api_key else {}
        self.client = httpx.AsyncClient(base_url=config.url, headers=headers, follow_redirects=False,
                                        timeout=httpx.Timeout(config.timeout, connect=min(10.0, config.timeout)),
                                        limits=httpx.Limits(max_connections=config.max_concurrency,
                                                            keepalive_expiry=KEEPALIVE_SECONDS))
        self.queue = FairQueue(config.max_concurrency, max_queue)
        self.wait_limit = wait_limit

    @property
    def in_flight(self) -> int:
        """Running and waiting requests: what "least loaded" compares."""
        return self.queue.in_use + self.queue.waiting

    @property
    def load(self) -> int:
        """What least-loaded routing compares: Flexi's own requests plus, when the engine publishes its queue
        (vLLM, llama-server), what waits there and what runs there beyond Flexi's requests."""
        h = self.health
        return self.in_flight + h.engine_waiting + max(0, h.engine_running - self.queue.in_use)

    def _still_open(self) -> None:
        """A request that waited in Flexi's queue while the circuit opened is not sent to the dead engine,
        nor one whose backend an admin removed or changed after the request had picked it (its connections
        are closed): it goes to the next backend (or fails) without counting as another failure."""
        if self.client.is_closed:
            raise BackendFailed(f'backend "{self.name}" was removed or changed while the request waited; try again',
                                status=503, code="backend_unavailable", reason=None)
        if self.health.circuit == OPEN:
            raise BackendFailed(f'backend "{self.name}" is unavailable ({self.health.last_error or "circuit open"})',
                                code="backend_unavailable", reason=None)

    async def _granted(self, ticket: Ticket) -> None:
        if not await ticket.wait(self.wait_limit):
            raise RequestTimeout(self.wait_limit)

    async def generate(self, model: str, req: GenerationRequest) -> AsyncIterator[Event]:
        ticket = self.queue.enter(req.user, req.priority, req.max_concurrent)
        try:
            if not ticket.granted:
                yield StatusEvent("queued", self.queue.position(ticket))
                await self._granted(ticket)
            self._still_open()
            if self.config.kind in OLLAMA_KINDS:
                events = ollama_wire.generate(self.client, self.name, model, req)
            else:
                events = openai_wire.generate(self.client, self.name, model, req, self.config.kind)
            try:
                async for ev in events:
                    yield ev
            finally:
                await events.aclose()
        finally:
            self.queue.leave(ticket)

    async def embed(self, model: str, req: EmbeddingRequest) -> EmbeddingResult:
        ticket = self.queue.enter(req.user, req.priority, req.max_concurrent)
        try:
            await self._granted(ticket)
            self._still_open()
            if self.config.kind in OLLAMA_KINDS:
                return await ollama_wire.embed(self.client, self.name, model, req)
            return await openai_wire.embed(self.client, self.name, model, req)
        finally:
            self.queue.leave(ticket)


class RemoteModel:
    """A `Backend` for one model name served by one or more remote engines."""

    renders_itself = True  # the engine applies the chat template: it gets the messages, not a prompt

    def __init__(self, record: ModelRecord, served_by: list[tuple[RemoteEngine, str]], context: int) -> None:
        self.record = record
        self.served_by = served_by  # (engine, the engine's name for the model), in configuration order
        self.context = context

    def _order(self) -> list[tuple[RemoteEngine, str]]:
        return sorted(self.served_by, key=lambda pair: pair[0].load)  # stable: ties keep config order

    def _admitted(self) -> Iterator[tuple[RemoteEngine, str, Admission]]:
        """The backends to try, least loaded first, skipping open circuits (a half-open one only for its
        single trial request). None admitted at all: 503 at once, with Retry-After = the shortest cooldown."""
        order = self._order()
        tried = False
        for engine, model in order:
            granted = engine.health.admit()  # decided just before the attempt: an earlier one may have changed it
            if granted is not None:
                tried = True
                yield engine, model, granted
        if not tried:
            wait = min(engine.health.remaining() for engine, _ in order)
            raise BackendsDown(self.record.name, max(1, math.ceil(wait)))

    async def generate(self, req: GenerationRequest, record: ModelRecord | None = None) -> AsyncIterator[Event]:
        failure: BackendFailed | None = None
        for engine, model, granted in self._admitted():
            started = answered = False
            events = engine.generate(model, req)
            try:
                async for ev in events:
                    if not answered and isinstance(ev, (TextChunk, ToolCalls, ThinkingChunk, GenerationStats)):
                        answered = True
                        engine.health.succeeded()
                    started = started or isinstance(ev, (TextChunk, ToolCalls, ThinkingChunk))
                    yield ev
                return
            except BackendFailed as exc:
                _report(engine, exc, granted)
                answered = True
                if started or not exc.retry:
                    raise
                log.warning("backend %s failed before the first token of %s (%s); trying the next one",
                            engine.name, req.model, exc.message)
                failure = exc
            finally:
                if not answered and granted == "trial":  # cancelled, refused, timed out in the queue: no verdict
                    engine.health.release()
                await events.aclose()
        assert failure is not None
        raise failure

    async def embed(self, req: EmbeddingRequest, record: ModelRecord | None = None) -> EmbeddingResult:
        failure: BackendFailed | None = None
        for engine, model, granted in self._admitted():
            try:
                result = await engine.embed(model, req)
            except BackendFailed as exc:
                _report(engine, exc, granted)
                if not exc.retry:
                    raise
                log.warning("backend %s failed to embed for %s (%s); trying the next one", engine.name, req.model,
                            exc.message)
                failure = exc
                continue
            except BaseException:
                if granted == "trial":
                    engine.health.release()
                raise
            engine.health.succeeded()
            return result
        assert failure is not None
        raise failure

    def context_for(self, record: ModelRecord, num_ctx: int | None) -> int:
        return min(num_ctx, self.context) if num_ctx else self.context

    def context_ceiling(self, record: ModelRecord) -> int:
        return self.context

    async def load(self, name: str, keep_alive: float | None) -> int:
        return 0  # the engine loads its models itself

    async def unload(self, name: str) -> None:
        return None


def _report(engine: RemoteEngine, exc: BackendFailed, granted: Admission) -> None:
    """Count a failure that says something about the backend; a refusal of this request only is no verdict
    (the trial, if this request held it, passes to the next)."""
    if exc.reason is None:
        if granted == "trial":
            engine.health.release()
        return
    was = engine.health.circuit
    engine.health.failed(exc.reason, exc.message)
    if engine.health.circuit != was:
        log.warning("backend %s: circuit %s after %d failures in a row (last: %s)", engine.name,
                    engine.health.circuit, engine.health.consecutive, exc.message)


def _record(name: ModelName, backends: list[BackendConfig], context: int, started: datetime) -> ModelRecord:
    digest = hashlib.sha256(("remote:" + name.display + ":" + ",".join(b.name for b in backends)).encode()).hexdigest()
    # every backend may take any request: the model can what all of them can
    capabilities = [c for c in ("completion", "tools", "vision", "thinking")
                    if c == "completion" or all(c in b.capabilities for b in backends)]
    info = GGUFInfo(architecture="remote", name=name.display, quantization_level="", context_length=context,
                    capabilities=capabilities,
                    model_info={"general.architecture": "remote", "flexi.external": any(b.external for b in backends)})
    return ModelRecord(name=name.display, model_name=name, digest=digest, size=0, modified_at=started,
                       model_path=Path("remote") / backends[0].name, info=info)


def health_of(settings: Settings) -> BackendHealth:
    """A fresh health state with the configured breaker (FLEXI_BACKEND_FAILURE_THRESHOLD, _COOLDOWN)."""
    return BackendHealth(settings.backend_failure_threshold, settings.backend_cooldown)


def served_models(configs: list[BackendConfig]) -> dict[ModelName, list[tuple[BackendConfig, str]]]:
    """Flexi's model names → the active backends serving each, with the backend's own name for it.
    Raises ValueError (a start-up error) for a name Flexi cannot use as a model name."""
    served: dict[ModelName, list[tuple[BackendConfig, str]]] = {}
    for config in configs:
        if not config.active:
            continue
        for ours, theirs in config.models.items():
            try:
                name = parse_model_name(ours).canonical()
            except InvalidModelName as exc:
                raise ValueError(f"backend {config.name!r}: {ours!r} is not a valid model name ({exc.message})") from None
            served.setdefault(name, []).append((config, theirs))
    return served


class RemoteBackends:
    """All configured backends and the models they serve; closes their connections at shutdown.

    `reload` swaps in a new list of backends while requests run (admins add and remove backends at run time)."""

    def __init__(self, settings: Settings) -> None:
        self.max_queue, self.wait_limit = settings.max_queue, settings.request_timeout
        self.context_length = settings.context_length
        self.settings = settings  # the breaker's threshold and cooldown for each new engine (health_of)
        self.engines: list[RemoteEngine] = []
        self.prober = Prober(lambda: list(self.engines), settings.backend_health_interval)
        self.models: dict[ModelName, RemoteModel] = {}
        self._retiring: dict[asyncio.Task[None], RemoteEngine] = {}
        self.reload(settings.backends)

    def reload(self, configs: list[BackendConfig]) -> None:
        """Serve `configs` from now on, in one step (nothing here awaits, so a request sees the old set or the
        new one). An unchanged backend keeps its engine (connections, queue, requests in flight); a removed or
        changed one finishes what it runs and waits for, then closes; a new one starts. Raises ValueError
        (nothing changes) for a model name Flexi cannot use."""
        served_by = served_models(configs)
        previous = {engine.name: engine for engine in self.engines}
        engines: list[RemoteEngine] = []
        for config in configs:
            if not config.active:
                continue
            engine = previous.get(config.name)
            if engine is None or engine.config != config:
                engine = RemoteEngine(config, self.max_queue, self.wait_limit, health_of(self.settings))
                log.info("backend %s (%s%s) at %s serves %s, at most %d at once", config.name, config.kind,
                         ", external" if config.external else "", config.url, ", ".join(config.models),
                         config.max_concurrency)  # never the api_key
            engines.append(engine)
        engine_of = {engine.name: engine for engine in engines}
        models: dict[ModelName, RemoteModel] = {}
        started = datetime.now(UTC)
        for name, pairs in served_by.items():
            served = [(engine_of[c.name], theirs) for c, theirs in pairs]
            context = min(c.context_length or self.context_length for c, _ in pairs)
            kept = self.models.get(name)
            if kept is not None and kept.served_by == served and kept.context == context:
                models[name] = kept  # the same record: a request resolved before the reload still finds it
            else:
                models[name] = RemoteModel(_record(name, [c for c, _ in pairs], context, started), served, context)
        retired = [engine for engine in self.engines if engine_of.get(engine.name) is not engine]
        self.engines, self.models = engines, models
        for engine in retired:
            self._retire(engine)

    def _retire(self, engine: RemoteEngine) -> None:
        log.info("backend %s removed or changed; its old connections close after its %d requests in flight",
                 engine.name, engine.in_flight)
        task = asyncio.get_running_loop().create_task(self._close_when_idle(engine), name=f"flexi-retire-{engine.name}")
        self._retiring[task] = engine
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    @staticmethod
    async def _close_when_idle(engine: RemoteEngine) -> None:
        while engine.in_flight:
            await asyncio.sleep(0.2)
        await engine.client.aclose()

    def record(self, name: str) -> ModelRecord | None:
        """The remote model `name`, or None (then it is a local one, or unknown)."""
        try:
            key = parse_model_name(name).canonical()
        except InvalidModelName:
            return None
        model = self.models.get(key)
        return model.record if model is not None else None

    def records(self) -> list[ModelRecord]:
        return [m.record for m in self.models.values()]

    def selector(self, local: Backend) -> BackendSelector:
        """Remote models to their engines, everything else to the local scheduler."""
        def select(record: ModelRecord) -> Backend:
            model = self.models.get(record.model_name.canonical())
            if model is not None and (model.record is record or record.info.architecture == "remote"):
                return model  # a remote record from before a reload: the model as it is served now
            if record.info.architecture == "remote":  # its backend was removed after the request found it
                raise ModelNotFound(record.name)
            return local

        return select

    def start(self) -> None:
        """Start the health probes (FLEXI_BACKEND_HEALTH_INTERVAL), also with no backend yet: an admin may add one."""
        self.prober.start()

    def health(self) -> list[dict[str, Any]]:
        """Each active backend's status, in configuration order, as plain JSON-able values:
        name, kind, url (never the api_key), external (bool), up (bool: circuit closed and the last probe,
        if any, good), circuit ("closed" | "half-open" | "open"), in_flight (requests running or waiting in
        Flexi for it), last_error (the last failure's message or None), last_checked (Unix time of the last
        probe or None)."""
        return [{"name": e.name, "kind": e.config.kind, "url": e.config.url, "external": e.config.external,
                 "up": e.health.up, "circuit": e.health.circuit, "in_flight": e.in_flight,
                 "last_error": e.health.last_error, "last_checked": e.health.last_checked} for e in self.engines]

    def backend_states(self) -> list[BackendState]:
        """The same for the metrics collector (`flexi/observability/metrics.py`), read at scrape time."""
        return [BackendState(name=e.name, up=e.health.up, circuit=CIRCUIT_CODES[e.health.circuit],
                             in_flight=e.in_flight, failures=dict(e.health.failures)) for e in self.engines]

    async def close(self) -> None:
        await self.prober.stop()
        for task in list(self._retiring):
            task.cancel()
        for engine in [*self.engines, *self._retiring.values()]:
            await engine.client.aclose()
