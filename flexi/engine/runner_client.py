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
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexi.engine.runner.protocol import MAX_LINE, READY_PREFIX, decode, encode
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


class RunnerProcess:
    def __init__(self, spec: RunnerSpec, socket_path: Path) -> None:
        self.spec = spec
        self.socket_path = socket_path
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._streams: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._tasks: list[asyncio.Task[None]] = []
        self._dead = False
        self._cancelled: set[int] = set()  # ids we cancelled: their final event is only logged

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
        self._tasks.append(asyncio.create_task(self._read_events(reader)))
        self._tasks.append(asyncio.create_task(self._drain_stdout()))

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
            text = line.decode(errors="replace").strip()
            if text.startswith(READY_PREFIX):
                self.info = json.loads(text[len(READY_PREFIX):])
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
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                msg = decode(line)
                req_id = msg.get("id", -1)
                queue = self._streams.get(req_id)
                if queue is not None:
                    queue.put_nowait(msg)
                elif req_id in self._cancelled and msg.get("ev") in ("done", "error", "result"):
                    self._cancelled.discard(req_id)
                    log.info("request cancelled by the client; the runner stopped it after %s generated tokens",
                             msg.get("completion_tokens", "?"))
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
            crash = {"ev": "crash", "code": code}
            for queue in self._streams.values():
                queue.put_nowait(crash)

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
    def _send(self, message: dict[str, Any]) -> None:
        if not self.alive or self._writer is None:
            raise RunnerCrashed()
        self._writer.write(encode(message))

    async def stream(self, op: str, payload: dict[str, Any], timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Send one request and yield its events until done/error/result.

        If the consumer stops early (client disconnect), the runner is told to
        cancel the sequence, which frees its slot at the next decode step.
        `timeout` (seconds) ends the stream with `TimeoutError`: one timer per
        request, not one per token.
        """
        req_id = next(self._ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._streams[req_id] = queue
        finished = False
        timer = (asyncio.get_running_loop().call_later(max(0.0, timeout), queue.put_nowait, {"ev": "timeout"})
                 if timeout is not None else None)
        try:
            self._send({"op": op, "id": req_id, **payload})
            while True:
                msg = await queue.get()
                ev = msg.get("ev")
                if ev == "timeout":
                    raise TimeoutError()
                if ev == "crash":
                    finished = True
                    raise RunnerCrashed()
                if ev == "error":
                    finished = True
                    raise EngineError(msg.get("message", "runner error"), int(msg.get("status", 500)), "runner_error")
                if ev in ("done", "result"):
                    finished = True
                yield msg
                if finished:
                    return
        finally:
            if timer is not None:
                timer.cancel()
            self._streams.pop(req_id, None)
            if not finished and self.alive:
                with contextlib.suppress(Exception):
                    self._send({"op": "cancel", "id": req_id})
                    self._cancelled.add(req_id)

    async def call(self, op: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        async with contextlib.aclosing(self.stream(op, payload, timeout)) as events:
            async for msg in events:
                return msg
        raise RunnerCrashed()
