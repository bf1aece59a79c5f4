"""Model lifecycle like Ollama's scheduler: load on demand, keep_alive, eviction, scale to zero.

One `Loaded` entry per model; each owns a runner process. Requests hold the
entry "active" while they run; an idle entry expires after its keep_alive and
its process ends, returning all of its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from flexi.config import Settings
from flexi.engine.runner_client import RunnerProcess, RunnerSpec
from flexi.engine.types import (
    EmbeddingRequest,
    EmbeddingResult,
    EngineError,
    GenerationRequest,
    GenerationStats,
    TextChunk,
)
from flexi.scheduler.memory import estimate_runner_bytes
from flexi.store.store import ModelRecord, ModelStore

log = logging.getLogger("flexi.scheduler")


@dataclass
class Loaded:
    record: ModelRecord
    runner: RunnerProcess
    num_ctx: int
    size: int
    keep_alive: float
    expires_at: float = math.inf  # time.monotonic() deadline once idle
    active: int = 0
    loaded_at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.record.name

    def expires_wall(self) -> datetime | None:
        """Wall-clock expiry for /api/ps (None = never)."""
        if math.isinf(self.keep_alive):
            return None
        remaining = self.keep_alive if self.active else max(0.0, self.expires_at - time.monotonic())
        return datetime.now(timezone.utc).astimezone() + timedelta(seconds=remaining)


class ModelManager:
    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self.loaded: dict[str, Loaded] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._changed = asyncio.Condition()
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever())

    async def shutdown(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        await asyncio.gather(*(entry.runner.stop() for entry in self.loaded.values()), return_exceptions=True)
        self.loaded.clear()

    # --- public API --------------------------------------------------------------
    def ps(self) -> list[Loaded]:
        return [e for e in self.loaded.values() if e.runner.alive]

    async def load(self, name: str, keep_alive: float | None = None, num_ctx: int | None = None) -> int:
        """Load (or keep) a model without generating; returns load time in ns."""
        async with self.use(name, keep_alive, num_ctx) as (_, load_ns):
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

    async def generate(self, req: GenerationRequest) -> AsyncIterator[TextChunk | GenerationStats]:
        payload = req.to_wire()
        limit = self.settings.max_predict
        payload["max_tokens"] = limit if req.max_tokens < 0 else min(req.max_tokens, limit)
        async with self.use(req.model, req.keep_alive, req.num_ctx) as (entry, load_ns):
            async for msg in entry.runner.stream("generate", payload):
                if msg["ev"] == "text":
                    yield TextChunk(text=msg["text"], n_tokens=msg["n"])
                elif msg["ev"] == "done":
                    yield GenerationStats(
                        finish_reason=msg["finish_reason"],
                        prompt_tokens=msg["prompt_tokens"],
                        completion_tokens=msg["completion_tokens"],
                        prompt_eval_ns=msg["prompt_eval_ns"],
                        eval_ns=msg["eval_ns"],
                        cached_tokens=msg.get("cached_tokens", 0),
                        tokens=msg.get("tokens"),
                        load_ns=load_ns,
                        queue_ns=0,
                    )

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResult:
        t0 = time.perf_counter_ns()
        async with self.use(req.model, req.keep_alive, req.num_ctx) as (entry, load_ns):
            msg = await entry.runner.call("embed", {"inputs": req.inputs, "truncate": req.truncate, "normalize": req.normalize})
        return EmbeddingResult(embeddings=msg["embeddings"], prompt_tokens=msg["prompt_tokens"],
                               total_ns=time.perf_counter_ns() - t0, load_ns=load_ns)

    async def tokenize(self, name: str, text: str) -> list[int]:
        async with self.use(name, None, None) as (entry, _):
            msg = await entry.runner.call("tokenize", {"text": text})
        return list(msg["tokens"])

    # --- acquiring a runner ---------------------------------------------------------
    @contextlib.asynccontextmanager
    async def use(self, name: str, keep_alive: float | None, num_ctx: int | None) -> AsyncIterator[tuple[Loaded, int]]:
        record = self.store.get(name)
        keep = self.settings.keep_alive_seconds if keep_alive is None else keep_alive
        want_ctx = self._context_for(record, num_ctx)
        t0 = time.perf_counter_ns()
        entry, started = await self._ensure_loaded(record, want_ctx)
        load_ns = time.perf_counter_ns() - t0 if started else 0
        entry.active += 1
        entry.keep_alive = keep
        try:
            yield entry, load_ns
        finally:
            entry.active -= 1
            if entry.active == 0:
                entry.expires_at = time.monotonic() + entry.keep_alive
                if entry.keep_alive <= 0 or not entry.runner.alive:
                    await self._unload(entry)
                async with self._changed:
                    self._changed.notify_all()

    def _context_for(self, record: ModelRecord, num_ctx: int | None) -> int:
        train = record.info.context_length or 2048
        want = num_ctx or int(record.parameters.get("num_ctx") or 0) or self.settings.context_length
        return max(256, min(want, train))

    async def _ensure_loaded(self, record: ModelRecord, num_ctx: int) -> tuple[Loaded, bool]:
        """Return the model's runner, starting one if needed; the flag says whether we started it."""
        lock = self._load_locks.setdefault(record.name, asyncio.Lock())
        async with lock:
            entry = self.loaded.get(record.name)
            if entry is not None:
                stale = not entry.runner.alive or entry.record.digest != record.digest
                too_small = entry.num_ctx < num_ctx
                if not stale and not too_small:
                    return entry, False
                if stale or entry.active == 0:
                    await self._unload(entry)
                else:
                    return entry, False  # busy: serve with the loaded context rather than stall everyone
            return await self._start_runner(record, num_ctx), True

    async def _start_runner(self, record: ModelRecord, num_ctx: int) -> Loaded:
        s = self.settings
        size = estimate_runner_bytes(record.model_path.stat().st_size, record.info, num_ctx, s.num_parallel)
        if size > s.max_memory:
            raise EngineError(
                f"model {record.name} needs about {size / 1024**3:.1f} GiB but the memory budget is "
                f"{s.max_memory / 1024**3:.1f} GiB (FLEXI_MAX_MEMORY); try a smaller num_ctx",
                500, "insufficient_memory")
        await self._make_room(size)
        spec = RunnerSpec(model_path=record.model_path, num_ctx=num_ctx, num_parallel=s.num_parallel,
                          num_threads=s.num_threads, repack=s.cpu_repack)
        runner = RunnerProcess(spec, s.run_dir / f"runner-{record.digest[:12]}-{time.monotonic_ns()}.sock")
        log.info("loading %s (ctx %d × %d slots, ~%d MiB)", record.name, num_ctx, s.num_parallel, size // 2**20)
        await runner.start(s.runner_start_timeout)
        entry = Loaded(record=record, runner=runner, num_ctx=int(runner.info.get("n_ctx", num_ctx)), size=size,
                       keep_alive=s.keep_alive_seconds)
        self.loaded[record.name] = entry
        return entry

    async def _make_room(self, needed: int) -> None:
        """Evict idle runners (soonest expiry first) until the new one fits; wait if all are busy."""
        deadline = time.monotonic() + self.settings.runner_start_timeout
        while True:
            entries = self.ps()
            used = sum(e.size for e in entries)
            fits = len(entries) < self.settings.max_loaded_models and used + needed <= self.settings.max_memory
            if fits:
                return
            idle = sorted((e for e in entries if e.active == 0), key=lambda e: e.expires_at)
            if idle:
                await self._unload(idle[0])
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EngineError("all loaded models are busy and there is no room for another one; try again", 503, "server_busy")
            async with self._changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))

    async def _unload(self, entry: Loaded) -> None:
        if self.loaded.get(entry.name) is entry:
            del self.loaded[entry.name]
        log.info("unloading %s", entry.name)
        await entry.runner.stop()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for entry in list(self.loaded.values()):
                if entry.active == 0 and (now >= entry.expires_at or not entry.runner.alive):
                    with contextlib.suppress(Exception):
                        await self._unload(entry)

