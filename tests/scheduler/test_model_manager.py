"""The real `ModelManager` driven through its runner seam by an in-process fake runner.

No processes, no model: fair queue, eviction, keep-alive, crash-restart and replicas in milliseconds.
The real runner keeps its end-to-end tests (tests/scheduler/test_lifecycle.py, test_scheduling.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from flexi.config import Settings, load_settings
from flexi.engine.runner_client import RunnerSpec
from flexi.engine.types import (
    GenerationRequest,
    GenerationStats,
    RunnerCrashed,
    TextChunk,
    TooManyRequests,
)
from flexi.scheduler import manager as manager_mod
from flexi.scheduler.manager import ModelManager
from flexi.scheduler.memory import estimate_runner_bytes
from flexi.scheduler.runners import Runner
from flexi.store.gguf_meta import GGUFInfo
from flexi.store.names import parse_model_name
from flexi.store.store import ModelRecord

INFO = GGUFInfo(architecture="llama", context_length=2048, block_count=2, embedding_length=64, head_count=2,
                vocab_size=100)
FILE_SIZE = 1024**2
CHUNKS = ["Hel", "lo"]


class FakeRunner:
    """Answers every generation with CHUNKS; a prompt registered with `FakeRunners.hold` waits until released."""

    def __init__(self, factory: FakeRunners, spec: RunnerSpec, socket_path: Path) -> None:
        self.factory = factory
        self.spec = spec
        self.socket_path = socket_path
        self.info: dict[str, Any] = {}
        self.started = self.stopped = False
        self.in_flight: list[str] = []  # prompts being generated now
        self.payloads: list[dict[str, Any]] = []
        self._dead = asyncio.Event()

    async def start(self, timeout: float) -> None:
        self.started = True
        self.info = {"n_ctx": self.spec.num_ctx}

    async def stop(self) -> None:
        self.stopped = True
        self._dead.set()

    def crash(self) -> None:
        """The process died: in-flight requests see it at their next event."""
        self._dead.set()

    @property
    def alive(self) -> bool:
        return self.started and not self._dead.is_set()

    async def stream(self, op: str, payload: dict[str, Any], timeout: float | None = None,
                     ) -> AsyncIterator[dict[str, Any]]:
        if not self.alive:
            raise RunnerCrashed()
        prompt = payload["prompt"]
        self.payloads.append({"op": op, **payload})
        self.in_flight.append(prompt)
        try:
            yield {"ev": "prefill", "prompt_tokens": 3}
            for text in CHUNKS:
                await self._hold(prompt)
                yield {"ev": "text", "text": text, "n": 1}
            yield {"ev": "done", "finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": len(CHUNKS),
                   "prompt_eval_ns": 10, "eval_ns": 20}
        finally:
            self.in_flight.remove(prompt)

    async def call(self, op: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        async with contextlib.aclosing(self.stream(op, payload, timeout)) as events:
            async for msg in events:
                return msg
        raise RunnerCrashed()

    async def _hold(self, prompt: str) -> None:
        gate = self.factory.gates.get(prompt)
        if gate is not None:
            waits = [asyncio.ensure_future(gate.wait()), asyncio.ensure_future(self._dead.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        if self._dead.is_set():
            raise RunnerCrashed()


class FakeRunners:
    """The runner factory handed to the manager; remembers every runner it made."""

    def __init__(self) -> None:
        self.made: list[FakeRunner] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[list[Any]]] = []  # requests the test started; settled before it ends

    def __call__(self, spec: RunnerSpec, socket_path: Path) -> Runner:
        runner = FakeRunner(self, spec, socket_path)
        self.made.append(runner)
        return runner

    def hold(self, *prompts: str) -> None:
        for prompt in prompts:
            self.gates[prompt] = asyncio.Event()

    def release(self, prompt: str) -> None:
        self.gates[prompt].set()

    def spawn(self, manager: ModelManager, req: GenerationRequest) -> asyncio.Task[list[Any]]:
        task = asyncio.create_task(_collect(manager, req))
        self.tasks.append(task)
        return task

    def running(self, prompt: str) -> FakeRunner | None:
        return next((r for r in self.made if prompt in r.in_flight), None)


class FakeStore:
    def __init__(self, home: Path, *names: str) -> None:
        self.records: dict[str, ModelRecord] = {}
        for i, name in enumerate(names):
            path = home / f"model-{i}.gguf"
            with path.open("wb") as f:
                f.truncate(FILE_SIZE)  # sparse: the manager sizes models by the file
            self.records[name] = ModelRecord(
                name=name, model_name=parse_model_name(name), digest=f"{i:02x}" * 32, size=FILE_SIZE,
                modified_at=datetime(2025, 1, 2, tzinfo=timezone.utc), model_path=path, info=INFO)

    def get(self, name: str) -> ModelRecord:
        return self.records[name]


def _settings(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": home, "num_parallel": 2, "num_replicas": 1, "max_memory": 1024**4,
                              "max_loaded_models": 3, "keep_alive": "5m", "context_length": 2048,
                              "request_timeout": 30.0}
    return load_settings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def _manager(tmp_path: Path, *names: str, **overrides: Any) -> AsyncIterator[tuple[ModelManager, FakeRunners]]:
    runners = FakeRunners()
    manager = ModelManager(_settings(tmp_path, **overrides), FakeStore(tmp_path, *(names or ("m:latest",))),
                           runner_factory=runners)  # type: ignore[arg-type]  # FakeStore has what the manager uses
    await manager.start()
    try:
        yield manager, runners
    finally:  # also when an assertion failed: no request may outlive its test (or hang the loop's close)
        for gate in runners.gates.values():
            gate.set()
        await asyncio.gather(*runners.tasks, return_exceptions=True)
        await manager.shutdown()


async def _until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for an event-driven condition (the deadline only bounds a broken run)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.002)


async def _collect(manager: ModelManager, req: GenerationRequest) -> list[Any]:
    return [item async for item in manager.generate(req)]


def _req(prompt: str, model: str = "m:latest", **kw: Any) -> GenerationRequest:
    return GenerationRequest(model=model, prompt=prompt, **kw)


async def test_generate_streams_the_runners_chunks_and_stats(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        req = _req("hi", max_tokens=5)
        items = await _collect(manager, req)
    assert [i.text for i in items if isinstance(i, TextChunk)] == CHUNKS
    stats = items[-1]
    assert isinstance(stats, GenerationStats)
    assert (stats.finish_reason, stats.prompt_tokens, stats.completion_tokens) == ("stop", 3, 2)
    assert req.prompt_tokens_admitted == 3  # the prefill event is what billing counts
    [runner] = runners.made
    assert runner.payloads[0]["op"] == "generate" and runner.payloads[0]["max_tokens"] == 5
    assert (runner.spec.num_ctx, runner.spec.num_parallel) == (2048, 2)


async def test_fair_queue_admits_slots_times_replicas_and_the_rest_wait(tmp_path: Path) -> None:
    async with _manager(tmp_path, num_parallel=2, num_replicas=2) as (manager, runners):
        prompts = [f"p{i}" for i in range(5)]
        runners.hold(*prompts)
        tasks = [runners.spawn(manager, _req(p, user=f"u{i}")) for i, p in enumerate(prompts)]
        await _until(lambda: sum(len(r.in_flight) for r in runners.made) == 4)
        queue = manager.queues["m:latest"]
        assert (queue.capacity, queue.in_use, queue.waiting) == (4, 4, 1)
        assert runners.running("p4") is None  # the fifth waits in the fair queue, not inside a runner
        assert sorted(len(r.in_flight) for r in runners.made) == [2, 2]
        for p in prompts:
            runners.release(p)
        results = await asyncio.gather(*tasks)
    assert all(isinstance(r[-1], GenerationStats) for r in results)


async def test_per_person_cap_gives_too_many_requests(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        runners.hold("first")
        first = runners.spawn(manager, _req("first", user="bob", max_concurrent=1))
        await _until(lambda: runners.running("first") is not None)
        with pytest.raises(TooManyRequests):
            await _collect(manager, _req("second", user="bob", max_concurrent=1))
        other = await _collect(manager, _req("alice's", user="alice", max_concurrent=1))  # only bob is capped
        assert isinstance(other[-1], GenerationStats)
        runners.release("first")
        await first


async def test_loading_a_second_model_evicts_the_idle_first(tmp_path: Path) -> None:
    one = estimate_runner_bytes(FILE_SIZE, INFO, 2048, 2)
    async with _manager(tmp_path, "a:latest", "b:latest", max_memory=one * 3 // 2) as (manager, runners):
        await _collect(manager, _req("x", model="a:latest"))
        assert list(manager.loaded) == ["a:latest"]
        await _collect(manager, _req("y", model="b:latest"))
        assert list(manager.loaded) == ["b:latest"]
        first, second = runners.made
        assert first.stopped and not second.stopped


async def test_keep_alive_expiry_unloads_the_idle_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "REAP_EVERY", 0.01)
    async with _manager(tmp_path) as (manager, runners):
        await _collect(manager, _req("x", keep_alive=0.05))
        assert "m:latest" in manager.loaded  # idle, but within its keep_alive
        await _until(lambda: runners.made[0].stopped)  # the reaper ended the runner: its memory is back
        assert "m:latest" not in manager.loaded


async def test_runner_dying_mid_request_fails_it_and_the_next_gets_a_fresh_runner(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        runners.hold("doomed")
        doomed = runners.spawn(manager, _req("doomed"))
        await _until(lambda: runners.running("doomed") is not None)
        runners.made[0].crash()
        with pytest.raises(RunnerCrashed):
            await doomed
        items = await _collect(manager, _req("next"))
        assert isinstance(items[-1], GenerationStats)
        assert len(runners.made) == 2 and runners.made[1].alive and runners.made[0].stopped


async def test_replicas_serve_the_least_loaded_first(tmp_path: Path) -> None:
    async with _manager(tmp_path, num_parallel=2, num_replicas=2) as (manager, runners):
        runners.hold("r1", "r2", "r3")
        tasks = {}
        for p in ("r1", "r2"):
            tasks[p] = runners.spawn(manager, _req(p, user=p))
            await _until(lambda p=p: runners.running(p) is not None)
        assert len(runners.made) == 2
        assert runners.running("r1") is not runners.running("r2")  # one each, not both on the first
        busy = runners.running("r2")
        runners.release("r1")
        await tasks.pop("r1")
        tasks["r3"] = runners.spawn(manager, _req("r3", user="r3"))
        await _until(lambda: runners.running("r3") is not None)
        assert runners.running("r3") is not busy  # the idle replica, not the one still generating r2
        for p in ("r2", "r3"):
            runners.release(p)
        await asyncio.gather(*tasks.values())
