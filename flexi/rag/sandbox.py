"""Parse an uploaded file in a separate, limited process: a hostile or broken file costs one failed upload.

Parsers (pypdf, python-docx via lxml, python-pptx) run on bytes a teacher, or whoever took over a
teacher's account, uploaded. In a child process (`python -m flexi.rag.parse_worker`) a parser that hangs
is killed at the wall-clock limit, one that spins at the CPU-time limit (which also holds if this process
dies), one that allocates without end fails at the address-space limit, and one that crashes takes only
itself down. Like a model runner, the child gets an allow-listed environment without FLEXI_* secrets
(`runner_environment`) and no core dumps; it also may not write files. It gets the bytes on stdin and
never a path, so a name like `../../app/main.py` is just a label.

`parse_document` blocks; call it from a worker thread (`asyncio.to_thread`) in async code.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from flexi.engine.runner_isolation import runner_environment
from flexi.rag.document import ERROR_KINDS, ParsedDocument, ParseError
from flexi.rag.parse_worker import Reply, Request

if TYPE_CHECKING:
    from flexi.config import Settings

log = logging.getLogger(__name__)
MIB = 1024**2
WORKER = (sys.executable, "-m", "flexi.rag.parse_worker")


@dataclass(frozen=True)
class ParseLimits:
    """What one parse may use. `max_unpacked_bytes` bounds what a ZIP-based file may unpack to: python-docx
    and python-pptx hold every part in memory, so half the memory limit leaves room for the parse itself."""

    max_upload_bytes: int = 50 * MIB
    max_pages: int = 2000
    timeout_seconds: float = 120.0
    memory_bytes: int = 1024 * MIB
    cpu_seconds: int | None = None  # None = the wall-clock limit rounded up (a parse is single-threaded)

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseLimits:
        return cls(max_upload_bytes=settings.rag_max_upload_bytes, max_pages=settings.rag_max_pages,
                   timeout_seconds=settings.rag_parse_timeout, memory_bytes=settings.rag_parse_memory_mib * MIB)

    @property
    def max_unpacked_bytes(self) -> int:
        return self.memory_bytes // 2

    @property
    def cpu_limit(self) -> int:
        return self.cpu_seconds if self.cpu_seconds is not None else max(1, math.ceil(self.timeout_seconds))


def parse_document(data: bytes, name: str, limits: ParseLimits, *, worker: Sequence[str] = WORKER) -> ParsedDocument:
    """The parsed document, or ParseError with the reason (any failure of the child becomes one).

    `worker` is the command to run; tests replace it to simulate a crashing or runaway parser.
    """
    if len(data) > limits.max_upload_bytes:
        raise ParseError("too_large", f"{len(data)} bytes", size_mib=_mib(len(data)), limit_mib=_mib(limits.max_upload_bytes))
    request = Request(name=name[-1000:], max_pages=limits.max_pages, max_unpacked_bytes=limits.max_unpacked_bytes,
                      memory_bytes=limits.memory_bytes, cpu_seconds=limits.cpu_limit)
    env = runner_environment(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the child may not write files (RLIMIT_FSIZE 0)
    process = subprocess.Popen(list(worker), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, start_new_session=True, close_fds=True)
    try:
        out, err = process.communicate(msgspec.json.encode(request) + b"\n" + data, timeout=limits.timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise ParseError("timeout", f"wall clock {limits.timeout_seconds} s", seconds=_seconds(limits.timeout_seconds)) from None
    except BaseException:
        _kill(process)
        raise
    return _reply(process.returncode, out, err, limits)


def _reply(returncode: int, out: bytes, err: bytes, limits: ParseLimits) -> ParsedDocument:
    reply: Reply | None = None
    if out:
        try:
            reply = msgspec.json.decode(out, type=Reply)
        except msgspec.DecodeError as exc:
            log.warning("parse worker answered garbage (exit %s): %s", returncode, exc)
    if reply is not None and reply.document is not None and returncode == 0:
        return reply.document
    if reply is not None and reply.error in ERROR_KINDS:
        raise ParseError(reply.error, reply.detail[:500], **_values(reply.error, limits))
    tail = err[-2000:].decode("utf-8", "replace")
    if returncode == -signal.SIGXCPU:
        raise ParseError("timeout", f"CPU time {limits.cpu_limit} s", **_values("timeout", limits))
    if "MemoryError" in tail:
        raise ParseError("memory", tail[-300:], **_values("memory", limits))
    log.warning("parse worker ended without an answer (exit %s): %s", returncode, tail[-500:])
    raise ParseError("crashed", f"exit {returncode}: {tail[-300:]}")


def _values(kind: str, limits: ParseLimits) -> dict[str, object]:
    """The message's values, from our own limits: the child's reply is as untrusted as the file it read."""
    if kind == "too_many_pages":
        return {"limit": limits.max_pages}
    if kind == "memory":
        return {"limit_mib": _mib(limits.memory_bytes)}
    if kind == "timeout":
        return {"seconds": _seconds(limits.timeout_seconds)}
    if kind == "too_large":
        return {"size_mib": "?", "limit_mib": _mib(limits.max_upload_bytes)}
    return {}


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: nothing it started survives it
    except (ProcessLookupError, PermissionError):
        pass
    process.kill()
    process.communicate()


def _mib(size: int) -> str:
    """Sizes as people read them: whole MiB from 10 MiB up, one decimal from 1 MiB, else two digits
    (0.23 MiB against a limit of 0.19 MiB, never a rounded "1 MiB; at most 1 MiB")."""
    value = size / MIB
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}".removesuffix(".0") if value >= 1 else f"{value:.2g}"


def _seconds(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
