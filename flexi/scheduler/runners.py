"""The seam between the scheduler and a runner: what `ModelManager` needs of one, and who makes them.

The manager only starts, stops, asks and streams; it never looks at processes or sockets. Writing
that down as a `Protocol` lets tests drive the real queueing, eviction, keep-alive, crash-restart and
replica logic with an in-process fake runner (tests/scheduler/), and lets other
backends (remote engines) plug in later without touching the manager.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from flexi.engine.runner.protocol import Event, Request, RunnerInfo
from flexi.engine.runner_client import RunnerProcess, RunnerSpec


class Runner(Protocol):
    """One runner of a loaded model, as the manager uses it (`RunnerProcess` is the real one)."""

    info: RunnerInfo | None  # what the runner reported once ready; the manager reads `n_ctx`
    kv_cells: tuple[int, int]  # KV cells held by running requests / in all, as of the last request start or end

    async def start(self, timeout: float) -> None:
        """Load the model; raise `EngineError` if it does not come up within `timeout` seconds."""
        ...

    async def stop(self) -> None:
        """End the runner and release all of its memory; safe to call more than once."""
        ...

    @property
    def alive(self) -> bool:
        """False once the runner died or was stopped: the manager then starts a fresh one."""
        ...

    def stream(self, request: Request, timeout: float | None = None) -> AsyncIterator[Event]:
        """Send one request; yield its events until the final one. Raises `RunnerCrashed` if the runner dies,
        `EngineError` on a runner `Error` event and `TimeoutError` after `timeout` seconds."""
        ...

    async def call(self, request: Request, timeout: float | None = None) -> Event:
        """One request, one answer (e.g. embeddings)."""
        ...


RunnerFactory = Callable[[RunnerSpec, Path], Runner]
"""Makes an unstarted runner for a spec, listening on the given socket path."""


def process_runner(spec: RunnerSpec, socket_path: Path) -> Runner:
    """The real runner: a llama.cpp process behind a Unix socket."""
    return RunnerProcess(spec, socket_path)
