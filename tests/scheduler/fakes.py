"""An in-process fake runner (and model store) for driving the real `ModelManager` through its runner seam.

No processes, no model: it speaks the typed runner protocol (flexi.engine.runner.protocol) like
`RunnerProcess`, answers every generation with CHUNKS, and lets a test hold a prompt mid-stream, crash
a runner, or make a start fail, so queueing, eviction, keep-alive, crash-restart, replicas and timeouts
run in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flexi.config import Settings, load_settings
from flexi.engine.runner.protocol import (
    Done,
    Embed,
    Embedded,
    Event,
    Generate,
    Prefill,
    Request,
    RunnerInfo,
    Text,
)
from flexi.engine.runner_client import RunnerSpec
from flexi.engine.types import EngineError, GenerationRequest, RunnerCrashed
from flexi.scheduler.manager import ModelManager
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
        self.info: RunnerInfo | None = None
        self.kv_cells = (0, 0)
        self.started = self.stopped = False
        self.in_flight: list[str] = []  # prompts being generated now
        self.requests: list[Request] = []
        self._dead = asyncio.Event()

    async def start(self, timeout: float) -> None:
        if self.factory.start_delay:
            await asyncio.sleep(self.factory.start_delay)
        if self.factory.start_error is not None:
            raise self.factory.start_error
        self.started = True
        self.info = RunnerInfo(pid=0, n_ctx=self.spec.num_ctx, n_parallel=self.spec.num_parallel, n_ctx_train=2048,
                               n_embd=64, n_vocab=100)

    async def stop(self) -> None:
        self.stopped = True
        self._dead.set()

    def crash(self) -> None:
        """The process died: in-flight requests see it at their next event."""
        self._dead.set()

    @property
    def alive(self) -> bool:
        return self.started and not self._dead.is_set()

    async def stream(self, request: Request, timeout: float | None = None) -> AsyncIterator[Event]:
        if not self.alive:
            raise RunnerCrashed()
        self.requests.append(request)
        if isinstance(request, Embed):
            yield Embedded(embeddings=[[1.0, 0.0] for _ in request.inputs], prompt_tokens=len(request.inputs))
            return
        assert isinstance(request, Generate)
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        self.factory.order.append(request.prompt)
        self.in_flight.append(request.prompt)
        try:
            yield Prefill(prompt_tokens=3)
            for text in CHUNKS:
                await self._hold(request.prompt, deadline)
                yield Text(text, 1)
            yield Done(finish_reason="stop", prompt_tokens=3, completion_tokens=len(CHUNKS), prompt_eval_ns=10,
                       eval_ns=20)
        finally:
            self.in_flight.remove(request.prompt)

    async def call(self, request: Request, timeout: float | None = None) -> Event:
        async with contextlib.aclosing(self.stream(request, timeout)) as events:
            async for msg in events:
                return msg
        raise RunnerCrashed()

    async def _hold(self, prompt: str, deadline: float | None) -> None:
        """Wait while the prompt is held; like `RunnerProcess`, raise TimeoutError at the deadline."""
        gate = self.factory.gates.get(prompt)
        if gate is not None:
            timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
            waits = [asyncio.ensure_future(gate.wait()), asyncio.ensure_future(self._dead.wait())]
            try:
                done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if not done:
                raise TimeoutError()
        if self._dead.is_set():
            raise RunnerCrashed()


class FakeRunners:
    """The runner factory handed to the manager; remembers every runner it made."""

    def __init__(self) -> None:
        self.made: list[FakeRunner] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[list[Any]]] = []  # requests the test started; settled before it ends
        self.start_delay = 0.0  # seconds each start takes (a slow model load)
        self.start_error: EngineError | None = None  # what starts raise (a model that does not load)
        self.order: list[str] = []  # prompts in the order runners began generating them

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
        task = asyncio.create_task(collect(manager, req))
        self.tasks.append(task)
        return task

    def running(self, prompt: str) -> FakeRunner | None:
        return next((r for r in self.made if prompt in r.in_flight), None)

    def live(self) -> list[FakeRunner]:
        return [r for r in self.made if r.alive]


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


def settings(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": home, "num_parallel": 2, "num_replicas": 1, "max_memory": 1024**4,
                              "max_loaded_models": 3, "keep_alive": "5m", "context_length": 2048,
                              "request_timeout": 30.0}
    return load_settings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def fake_manager(tmp_path: Path, *names: str, **overrides: Any) -> AsyncIterator[tuple[ModelManager, FakeRunners]]:
    """A started manager over fake runners and a store of `names` (default one model, m:latest)."""
    runners = FakeRunners()
    manager = ModelManager(settings(tmp_path, **overrides), FakeStore(tmp_path, *(names or ("m:latest",))),
                           runner_factory=runners)  # type: ignore[arg-type]  # FakeStore has what the manager uses
    await manager.start()
    try:
        yield manager, runners
    finally:  # also when an assertion failed: no request may outlive its test (or hang the loop's close)
        for gate in runners.gates.values():
            gate.set()
        await asyncio.gather(*runners.tasks, return_exceptions=True)
        await manager.shutdown()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for an event-driven condition (the deadline only bounds a broken run)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.002)


async def collect(manager: ModelManager, req: GenerationRequest) -> list[Any]:
    return [item async for item in manager.generate(req)]


def req(prompt: str, model: str = "m:latest", **kw: Any) -> GenerationRequest:
    return GenerationRequest(model=model, prompt=prompt, **kw)
