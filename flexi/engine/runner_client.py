"""Server side of a runner: start the process, multiplex requests over its socket.

The server holds one `RunnerProcess` per loaded model. When the process dies,
every in-flight request ends with a clear `RunnerCrashed` error and the object
reports `alive == False`, so the scheduler starts a fresh one next time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from flexi.engine.runner.protocol import (
    FINAL,
    MAX_LINE,
    Cancel,
    Done,
    Error,
    Event,
    Prefill,
    ProtocolError,
    Request,
    RunnerInfo,
    Text,
    decode_event,
    encode,
    parse_ready,
)
from flexi.engine.runner_isolation import ensure_private_dir, runner_environment
from flexi.engine.types import EngineError, RunnerCrashed

log = logging.getLogger("flexi.runner_client")


@dataclass(frozen=True)
class RunnerSpec:
    model_path: Path
    num_ctx: int
    num_parallel: int
    num_threads: int
    repack: str = "auto"
    max_open_files: int = 1024
    max_data_bytes: int | None = None  # RLIMIT_DATA; None = unlimited
    env_names: tuple[str, ...] = ()  # extra environment variables to pass (FLEXI_RUNNER_ENV)


@dataclass(frozen=True)
class _Ended:
    """Put into a request's queue instead of an event: the runner died or broke the protocol."""

    message: str | None = None  # for RunnerCrashed; None = its default text


class _TimedOut:
    """Put into a request's queue by its timer."""


_TIMED_OUT = _TimedOut()
Signal = Event | _Ended | _TimedOut


class RunnerProcess:
    def __init__(self, spec: RunnerSpec, socket_path: Path) -> None:
        self.spec = spec
        self.socket_path = socket_path
        self.proc: asyncio.subprocess.Process | None = None
        self.info: RunnerInfo | None = None  # set once the runner is ready
        self._writer: asyncio.StreamWriter | None = None
        self._streams: dict[int, asyncio.Queue[Signal]] = {}
        self._ids = itertools.count(1)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._tasks: list[asyncio.Task[None]] = []
        self._dead = False
        self._cancelled: set[int] = set()  # ids we cancelled: their final event is only logged
        self.kv_cells: tuple[int, int] = (0, 0)  # KV cells held by running requests / in all, as of the last start or end

    # --- lifecycle -------------------------------------------------------
    async def start(self, timeout: float) -> None:
        ensure_private_dir(self.socket_path.parent)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        s = self.spec
        limits = ["--max-open-files", str(s.max_open_files)]
        if s.max_data_bytes:
            limits += ["--max-data-bytes", str(s.max_data_bytes)]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flexi.engine.runner",
            "--model", str(s.model_path), "--socket", str(self.socket_path),
            "--ctx", str(s.num_ctx), "--parallel", str(s.num_parallel),
            "--threads", str(s.num_threads), "--repack", s.repack, *limits,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=runner_environment(os.environ, s.env_names),  # no secrets: see runner_isolation
        )
        self._tasks.append(asyncio.create_task(self._drain_stderr()))
        try:
            await asyncio.wait_for(self._wait_ready(), timeout)
            reader, self._writer = await asyncio.open_unix_connection(str(self.socket_path), limit=MAX_LINE)
        except BaseException as exc:  # also cancellation: never leave an untracked runner behind
            await asyncio.shield(self.stop())
            if not isinstance(exc, (asyncio.TimeoutError, OSError, EngineError)):
                raise
            detail = self.stderr_summary()
            if isinstance(exc, asyncio.TimeoutError):
                raise EngineError(f"the model did not load within {timeout:.0f} s", 500, "load_timeout") from None
            raise EngineError(f"the model could not be loaded: {detail or exc}", 500, "load_failed") from None
        self._attach(reader, self._writer)
        self._tasks.append(asyncio.create_task(self._drain_stdout()))

    def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Talk to a runner over this connection (`start` connects to the process it started)."""
        self._writer = writer
        self._tasks.append(asyncio.create_task(self._read_events(reader)))

    async def _drain_stdout(self) -> None:
        """Keep reading stdout after READY: a library printing there must never fill the pipe and block the runner."""
        assert self.proc and self.proc.stdout
        while await self.proc.stdout.readline():
            pass

    async def _wait_ready(self) -> None:
        assert self.proc and self.proc.stdout
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                await self.proc.wait()
                await asyncio.sleep(0.05)  # let stderr drain for the message
                raise EngineError(f"runner exited with code {self.proc.returncode}")
            info = parse_ready(line.decode(errors="replace").strip())
            if info is not None:
                self.info = info
                return

    async def _drain_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if text:
                self._stderr_tail.append(text)
                log.debug("runner %s: %s", self.pid, text)

    def stderr_summary(self) -> str:
        errors = [l for l in self._stderr_tail if l.startswith("error") or "error" in l.lower()]
        return (errors or list(self._stderr_tail) or [""])[-1].removeprefix("error: ")

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        ended = _Ended()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                req_id, event = decode_event(line)
                if isinstance(event, (Prefill, Done)) and event.kv is not None:
                    self.kv_cells = event.kv
                queue = self._streams.get(req_id)
                if queue is not None:
                    queue.put_nowait(event)
                elif req_id in self._cancelled and isinstance(event, FINAL):
                    self._cancelled.discard(req_id)
                    log.info("request cancelled by the client; the runner stopped it after %s generated tokens",
                             event.completion_tokens if isinstance(event, Done) else "?")
        except ProtocolError as exc:  # a bug on one side: this runner cannot be trusted with more requests
            log.error("runner %s sent %s; stopping it", self.pid, exc)
            ended = _Ended(f"the model runner sent a message the server could not read ({exc}); please retry")
            if self.proc is not None and self.proc.returncode is None:
                self.proc.kill()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            log.warning("runner connection failed: %s", exc)
        finally:
            self._dead = True
            code = None
            if self.proc is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    code = await asyncio.wait_for(self.proc.wait(), 2)
            if self._streams:
                log.error("runner %s died (exit code %s) with %d requests in flight: %s",
                          self.pid, code, len(self._streams), self.stderr_summary())
            for queue in self._streams.values():
                queue.put_nowait(ended)

    async def stop(self, grace: float = 3.0) -> None:
        """End the process: all its memory returns to the system."""
        self._dead = True
        if self._writer is not None:
            self._writer.close()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    @property
    def alive(self) -> bool:
        return not self._dead and self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def in_flight(self) -> int:
        return len(self._streams)

    # --- requests ----------------------------------------------------------
    def _send(self, req_id: int, message: Request) -> None:
        if not self.alive or self._writer is None:
            raise RunnerCrashed()
        self._writer.write(encode(req_id, message))

    async def stream(self, request: Request, timeout: float | None = None) -> AsyncIterator[Event]:
        """Send one request and yield its events until the final one (`FINAL`; an `Error` is raised instead).

        If the consumer stops early (client disconnect), the runner is told to
        cancel the sequence, which frees its slot at the next decode step.
        `timeout` (seconds) ends the stream with `TimeoutError`: one timer per
        request, not one per token.
        """
        req_id = next(self._ids)
        queue: asyncio.Queue[Signal] = asyncio.Queue()
        self._streams[req_id] = queue
        finished = False
        timer = (asyncio.get_running_loop().call_later(max(0.0, timeout), queue.put_nowait, _TIMED_OUT)
                 if timeout is not None else None)
        try:
            self._send(req_id, request)
            while True:
                msg = await queue.get()
                if type(msg) is Text:  # the hot path: one per token
                    yield msg
                    continue
                if msg is _TIMED_OUT:
                    raise TimeoutError()
                if isinstance(msg, _Ended):
                    finished = True
                    raise RunnerCrashed(msg.message) if msg.message else RunnerCrashed()
                if isinstance(msg, Error):
                    finished = True
                    raise EngineError(msg.message, msg.status, "runner_error")
                assert not isinstance(msg, _TimedOut)
                finished = isinstance(msg, FINAL)
                yield msg
                if finished:
                    return
        finally:
            if timer is not None:
                timer.cancel()
            self._streams.pop(req_id, None)
            if not finished and self.alive:
                with contextlib.suppress(Exception):
                    self._send(req_id, Cancel())
                    self._cancelled.add(req_id)

    async def call(self, request: Request, timeout: float | None = None) -> Event:
        """One request, one answer (embeddings, tokens)."""
        async with contextlib.aclosing(self.stream(request, timeout)) as events:
            async for msg in events:
                return msg
        raise RunnerCrashed()
