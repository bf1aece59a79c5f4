"""Model lifecycle like Ollama's scheduler, plus fair admission: queue → load → least-loaded replica.

Per model: a `FairQueue` admits at most `replicas × num_parallel` requests at once (so runners never
queue internally and fairness is decided here), a `Loaded` entry owns the runner processes. Idle
entries expire after keep_alive and their processes end, returning all of their memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flexi.config import Settings
from flexi.engine.runner import protocol as wire
from flexi.engine.runner.protocol import Done, Embedded, Scored, Text, embed_message, generate_message, generation_stats
from flexi.engine.runner_client import RunnerSpec
from flexi.engine.runner_isolation import data_limit, ensure_private_dir
from flexi.engine.types import (
    EmbeddingRequest,
    EmbeddingResult,
    EngineError,
    GenerationRequest,
    GenerationStats,
    RequestTimeout,
    Prefill,
    PromptLogprobs,
    RunnerCrashed,
    ServerBusy,
    StatusEvent,
    TextChunk,
)
from flexi.scheduler.fair_queue import FairQueue, Ticket
from flexi.scheduler.memory import estimate_runner_bytes
from flexi.scheduler.runners import Runner, RunnerFactory, process_runner
from flexi.store.store import ModelRecord, ModelStore

log = logging.getLogger("flexi.scheduler")

FOREVER_AFTER = 100 * 365 * 86400.0  # keep_alive beyond a century is "forever" (and datetime would overflow)
STATUS_AFTER = 0.3  # seconds of waiting before streaming clients are told why (keeps fast errors as HTTP codes)
REAP_EVERY = 0.25  # seconds between looks for expired or crashed idle models


@dataclass
class Replica:
    runner: Runner
    active: int = 0


@dataclass
class Loaded:
    record: ModelRecord
    replicas: list[Replica]
    num_ctx: int
    size: int  # all replicas
    keep_alive: float
    expires_at: float = math.inf  # time.monotonic() deadline once idle
    active: int = 0
    loaded_at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def alive(self) -> bool:
        return all(r.runner.alive for r in self.replicas)

    def pick(self) -> Replica:
        """Least-loaded live replica."""
        live = [r for r in self.replicas if r.runner.alive]
        if not live:
            raise RunnerCrashed()
        return min(live, key=lambda r: r.active)

    def expires_wall(self) -> datetime | None:
        """Wall-clock expiry for /api/ps (None = never)."""
        remaining = self.keep_alive if self.active else max(0.0, self.expires_at - time.monotonic())
        if math.isinf(remaining) or remaining > FOREVER_AFTER:
            return None
        return datetime.now(timezone.utc).astimezone() + timedelta(seconds=remaining)


def _shutting_down() -> ServerBusy:
    return ServerBusy(retry_after=5, message="the server is shutting down; try again shortly")


def _socket_path(run_dir: Path, name: str) -> Path:
    """AF_UNIX paths are limited to 107 bytes: fall back to a short private temp dir for long FLEXI_HOMEs."""
    path = run_dir / name
    if len(str(path)) < 100:
        return path
    short = Path(tempfile.gettempdir()) / f"flexi-{os.getuid()}"  # others can pre-create this name: check it
    return ensure_private_dir(short) / name


class ModelManager:
    def __init__(self, settings: Settings, store: ModelStore, runner_factory: RunnerFactory = process_runner) -> None:
        """`runner_factory` makes the runners (real processes by default; tests pass an in-process fake)."""
        self.settings = settings
        self.store = store
        self.runner_factory = runner_factory
        self.loaded: dict[str, Loaded] = {}
        self.queues: dict[str, FairQueue] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._changed = asyncio.Condition()
        self._placement = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False  # set by shutdown: no new runner may start, waiting requests end
        self.restarts: dict[str, int] = {}  # model -> runners found dead and replaced (for /metrics)

    async def start(self) -> None:
        ensure_private_dir(self.settings.run_dir)  # refuse to start on a socket directory others could tamper with
        self._reaper = asyncio.create_task(self._reap_forever())

    async def shutdown(self) -> None:
        """Stop every runner. In-flight requests fail (their runner ends); requests still waiting in a queue or
        for a load end with 503 instead of being admitted to a runner started after shutdown (which nobody
        would stop) or waiting out the request timeout."""
        self._closing = True
        if self._reaper:
            self._reaper.cancel()
        async with self._changed:
            self._changed.notify_all()  # loads waiting for room look again, and see the flag
        await asyncio.gather(*(self._stop_entry(e) for e in self.loaded.values()), return_exceptions=True)
        self.loaded.clear()

    def _check_open(self) -> None:
        if self._closing:
            raise _shutting_down()

    # --- public API ------------------------------------------------------------------
    def ps(self) -> list[Loaded]:
        return [e for e in self.loaded.values() if e.alive]

    def queue_for(self, record: ModelRecord) -> FairQueue:
        queue = self.queues.get(record.name)
        if queue is None:
            s = self.settings
            queue = FairQueue(capacity=self.slots_for(record) * s.num_replicas, max_waiting=s.max_queue)
            self.queues[record.name] = queue
        return queue

    def slots_for(self, record: ModelRecord, num_ctx: int | None = None) -> int:
        """FLEXI_NUM_PARALLEL, or when 0 (auto) the most of 8/4/2/1 slots whose runner fits half the budget."""
        s = self.settings
        if s.num_parallel:
            return s.num_parallel
        ctx = num_ctx or self._context_for(record, None)
        size = record.model_path.stat().st_size if record.model_path.exists() else 0
        for slots in (8, 4, 2):
            if estimate_runner_bytes(size, record.info, ctx, slots) * s.num_replicas <= s.max_memory // 2:
                return slots
        return 1

    async def load(self, name: str, keep_alive: float | None = None, num_ctx: int | None = None) -> int:
        """Load (or keep) a model without generating; returns load time in ns."""
        async with self._use(self.store.get(name), keep_alive, num_ctx) as (_, __, load_ns):
            return load_ns

    async def unload(self, name: str) -> bool:
        record = self.store.get(name)
        entry = self.loaded.get(record.name)
        if entry is None:
            return False
        if entry.active:
            entry.keep_alive = 0.0  # unload as soon as the last request ends
            return True
        await self._unload(entry)
        return True

    async def generate(self, req: GenerationRequest, record: ModelRecord | None = None
                       ) -> AsyncIterator[Prefill | TextChunk | PromptLogprobs | GenerationStats | StatusEvent]:
        """Queue fairly, load if needed, stream from the least-loaded replica; all within the request timeout.

        `req` is resolved (flexi/service/): its limits are final and used as they are. `record` is the
        model record the service resolved it against (looked up again only when not given)."""
        record = record if record is not None else self.store.get(req.model)
        message = generate_message(req)
        deadline = time.monotonic() + self.settings.request_timeout
        t_enter = time.perf_counter_ns()
        queue = self.queue_for(record)
        ticket = queue.enter(req.user, req.priority, req.max_concurrent)
        try:
            async for status in self._wait_turn(queue, ticket, deadline):
                yield status
            queue_ns = time.perf_counter_ns() - t_enter
            t_load = time.perf_counter_ns()
            want_ctx = self._context_for(record, req.num_ctx)
            loading: asyncio.Future[tuple[Loaded, bool]] | None = None
            if not self._ready(record, want_ctx):  # hot path stays free of tasks and timers
                loading = asyncio.ensure_future(self._ensure_loaded(record, want_ctx))
                done, _ = await asyncio.wait({loading}, timeout=STATUS_AFTER)
                if not done:
                    yield StatusEvent("loading")  # slow load: tell streaming clients instead of a silent wait
            async with self._use(record, req.keep_alive, req.num_ctx, loading) as (_, replica, load_ns):
                if load_ns:
                    load_ns = time.perf_counter_ns() - t_load
                stream = replica.runner.stream(message, timeout=deadline - time.monotonic())
                try:
                    async for msg in stream:
                        if type(msg) is Text:
                            yield TextChunk(text=msg.text, n_tokens=msg.n, logprobs=msg.logprobs)
                        elif isinstance(msg, wire.Prefill):  # a slot took the prompt: from now on it is paid for
                            yield Prefill(msg.prompt_tokens)
                        elif isinstance(msg, Scored):
                            yield PromptLogprobs(msg.logprobs)
                        elif isinstance(msg, Done):
                            yield generation_stats(msg, load_ns=max(load_ns, 0), queue_ns=queue_ns)
                except TimeoutError:
                    raise RequestTimeout(self.settings.request_timeout) from None
                finally:
                    await stream.aclose()
        finally:
            queue.leave(ticket)

    async def embed(self, req: EmbeddingRequest, record: ModelRecord | None = None) -> EmbeddingResult:
        t0 = time.perf_counter_ns()
        record = record if record is not None else self.store.get(req.model)
        queue = self.queue_for(record)
        ticket = queue.enter(req.user, req.priority, req.max_concurrent)
        try:
            deadline = time.monotonic() + self.settings.request_timeout
            async for _ in self._wait_turn(queue, ticket, deadline):
                pass
            async with self._use(record, req.keep_alive, req.num_ctx) as (_, replica, load_ns):
                try:
                    msg = await replica.runner.call(embed_message(req), timeout=deadline - time.monotonic())
                except TimeoutError:
                    raise RequestTimeout(self.settings.request_timeout) from None
        finally:
            queue.leave(ticket)
        if not isinstance(msg, Embedded):
            raise EngineError(f"the runner answered an embedding request with {type(msg).__name__}", 500, "runner_error")
        return EmbeddingResult(embeddings=msg.embeddings, prompt_tokens=msg.prompt_tokens,
                               total_ns=time.perf_counter_ns() - t0, load_ns=load_ns)

    # --- admission --------------------------------------------------------------------
    async def _wait_turn(self, queue: FairQueue, ticket: Ticket, deadline: float) -> AsyncIterator[StatusEvent]:
        """Wait for the ticket; after STATUS_AFTER seconds, report the queue position now and then."""
        timeout = STATUS_AFTER
        last: int | None = None
        while not await ticket.wait(min(timeout, max(0.0, deadline - time.monotonic()))):
            self._check_open()
            if time.monotonic() >= deadline:
                raise RequestTimeout(self.settings.request_timeout)
            position = queue.position(ticket)
            if position != last:
                last = position
                yield StatusEvent("queued", position)
            timeout = 1.0
        self._check_open()

    # --- acquiring a runner -----------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _use(self, record: ModelRecord, keep_alive: float | None, num_ctx: int | None,
                   loading: asyncio.Future[tuple[Loaded, bool]] | None = None,
                   ) -> AsyncIterator[tuple[Loaded, Replica, int]]:
        """Hold a loaded model (and its least-loaded replica) for the duration of a request.

        `loading` is a load already started by the caller (to tell a streaming client
        that the model is loading while it waits); otherwise it is started here.
        """
        keep = self.settings.keep_alive_seconds if keep_alive is None else keep_alive
        t0 = time.perf_counter_ns()
        if loading is None:
            entry, started = await self._ensure_loaded(record, self._context_for(record, num_ctx))
        else:  # shared with the caller: one client leaving must not abort the load for everyone
            entry, started = await asyncio.shield(loading)
        load_ns = time.perf_counter_ns() - t0 if started else 0
        replica = entry.pick()
        entry.active += 1
        replica.active += 1
        entry.keep_alive = keep
        try:
            yield entry, replica, load_ns
        finally:
            replica.active -= 1
            await self._release(entry)

    async def _release(self, entry: Loaded) -> None:
        entry.active -= 1
        if entry.active == 0:
            entry.expires_at = time.monotonic() + entry.keep_alive
            if entry.keep_alive <= 0 or not entry.alive:
                await self._unload(entry)
            async with self._changed:
                self._changed.notify_all()

    def _ready(self, record: ModelRecord, num_ctx: int) -> bool:
        entry = self.loaded.get(record.name)
        return entry is not None and entry.alive and entry.record.digest == record.digest and entry.num_ctx >= num_ctx

    def context_for(self, record: ModelRecord, num_ctx: int | None) -> int:
        """The context a request with `num_ctx` gets on `record` (clamped to what the model was trained for)."""
        return self._context_for(record, num_ctx)

    def context_ceiling(self, record: ModelRecord) -> int:
        """The largest context a request can get on `record` without reloading it beyond its configuration:
        what it is loaded with now, or its configured default (FLEXI_CONTEXT_LENGTH / PARAMETER num_ctx)."""
        entry = self.loaded.get(record.name)
        loaded = entry.num_ctx if entry is not None and entry.alive and entry.record.digest == record.digest else 0
        return max(loaded, self._context_for(record, None))

    def _context_for(self, record: ModelRecord, num_ctx: int | None) -> int:
        train = record.info.context_length or 2048
        want = num_ctx or int(record.parameters.get("num_ctx") or 0) or self.settings.context_length
        return max(256, min(want, train))

    async def _ensure_loaded(self, record: ModelRecord, num_ctx: int) -> tuple[Loaded, bool]:
        """Return the model's runners, starting them if needed; the flag says whether we started them."""
        lock = self._load_locks.setdefault(record.name, asyncio.Lock())
        async with lock:
            entry = self.loaded.get(record.name)
            if entry is not None:
                stale = not entry.alive or entry.record.digest != record.digest
                too_small = entry.num_ctx < num_ctx
                if not stale and not too_small:
                    return entry, False
                if entry.active == 0:
                    await self._unload(entry)
                elif not stale or any(r.runner.alive for r in entry.replicas):
                    return entry, False  # busy: serve with what runs rather than stall everyone
                else:
                    await self._unload(entry)
            return await self._start(record, num_ctx), True

    async def _start(self, record: ModelRecord, num_ctx: int) -> Loaded:
        s = self.settings
        slots = self.queue_for(record).capacity // s.num_replicas
        per_runner = estimate_runner_bytes(record.model_path.stat().st_size, record.info, num_ctx, slots)
        size = per_runner * s.num_replicas
        if size > s.max_memory:
            raise EngineError(
                f"model {record.name} needs about {size / 1024**3:.1f} GiB but the memory budget is "
                f"{s.max_memory / 1024**3:.1f} GiB (FLEXI_MAX_MEMORY); try a smaller num_ctx", 500, "insufficient_memory")
        async with self._placement:  # one placement at a time: concurrent loads must see each other's memory
            return await self._place(record, num_ctx, slots, size)

    async def _place(self, record: ModelRecord, num_ctx: int, slots: int, size: int) -> Loaded:
        s = self.settings
        await self._make_room(size)
        self._check_open()
        spec = RunnerSpec(model_path=record.model_path, num_ctx=num_ctx, num_parallel=slots,
                          num_threads=max(1, s.num_threads // s.num_replicas), repack=s.cpu_repack,  # replicas share the cores
                          max_open_files=s.runner_max_open_files,
                          max_data_bytes=data_limit(size // s.num_replicas, s.runner_memory_margin),
                          env_names=tuple(s.runner_env))
        runners = [self.runner_factory(spec, _socket_path(
                       s.run_dir, f"runner-{record.digest[:12]}-{time.monotonic_ns()}-{i}.sock"))
                   for i in range(s.num_replicas)]
        log.info("loading %s (%d× ctx %d × %d slots, ~%d MiB)", record.name, s.num_replicas, num_ctx, slots,
                 size // 2**20)
        try:
            results = await asyncio.gather(*(r.start(s.runner_start_timeout) for r in runners), return_exceptions=True)
        except BaseException:  # cancelled: stop whatever started
            await asyncio.shield(asyncio.gather(*(r.stop() for r in runners), return_exceptions=True))
            raise
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is None and self._closing:  # shut down while loading: nobody would stop these
            failure = _shutting_down()
        if failure is not None:
            await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)
            raise failure
        entry = Loaded(record=record, replicas=[Replica(r) for r in runners],
                       num_ctx=runners[0].info.n_ctx if runners[0].info else num_ctx, size=size, keep_alive=s.keep_alive_seconds,
                       expires_at=time.monotonic() + s.keep_alive_seconds)
        self.loaded[record.name] = entry
        return entry

    async def _make_room(self, needed: int) -> None:
        """Evict idle runners (soonest expiry first) until the new one fits; wait if all are busy."""
        deadline = time.monotonic() + self.settings.runner_start_timeout
        while True:
            entries = list(self.loaded.values())  # partly crashed entries still hold memory until reaped
            used = sum(e.size for e in entries)
            if len(entries) < self.settings.max_loaded_models and used + needed <= self.settings.max_memory:
                return
            idle = sorted((e for e in entries if e.active == 0), key=lambda e: e.expires_at)
            if idle:
                await self._unload(idle[0])
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EngineError("all loaded models are busy and there is no room for another one; try again",
                                  503, "server_busy")
            async with self._changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))

    async def _unload(self, entry: Loaded) -> None:
        if self.loaded.get(entry.name) is entry:
            del self.loaded[entry.name]
            dead = sum(not r.runner.alive for r in entry.replicas)  # counted once per entry, however it is unloaded
            if dead and not self._closing:  # crashed: the next request starts a fresh runner
                self.restarts[entry.name] = self.restarts.get(entry.name, 0) + dead
        log.info("unloading %s", entry.name)
        await self._stop_entry(entry)

    @staticmethod
    async def _stop_entry(entry: Loaded) -> None:
        await asyncio.gather(*(r.runner.stop() for r in entry.replicas), return_exceptions=True)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            now = time.monotonic()
            for entry in list(self.loaded.values()):
                if entry.active == 0 and (now >= entry.expires_at or not entry.alive):
                    with contextlib.suppress(Exception):
                        await self._unload(entry)
