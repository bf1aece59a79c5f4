"""The parse process: `python -m flexi.rag.parse_worker`, started by `flexi.rag.sandbox` for one file.

It limits itself before reading the file (address space, CPU time, no core dumps, no files written, few
open files), reads one request from stdin (a JSON header line, then the file's bytes), and writes one
JSON reply to stdout: the parsed document or the kind of error. It never gets a path: the upload's name
is only a label. A crash, a kill or garbage on stdout is the sandbox's to interpret.
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
import warnings

import msgspec

from flexi.engine.runner_isolation import RunnerLimits
from flexi.rag.document import ParsedDocument, ParseError

MAX_HEADER = 64 * 1024


class Request(msgspec.Struct, frozen=True):
    name: str
    max_pages: int
    max_unpacked_bytes: int
    memory_bytes: int
    cpu_seconds: int


class Reply(msgspec.Struct, frozen=True, omit_defaults=True):
    document: ParsedDocument | None = None
    error: str | None = None
    detail: str = ""


def apply_limits(request: Request) -> None:
    """Lower soft and hard limits, so nothing the parser runs can raise them again."""
    RunnerLimits(max_open_files=64).apply()  # no core dumps (they would hold the upload), few descriptors
    _lower(resource.RLIMIT_AS, request.memory_bytes)
    # SIGXCPU ends the process at the soft limit; the hard one (SIGKILL) only if SIGXCPU was caught somehow.
    _lower(resource.RLIMIT_CPU, request.cpu_seconds, hard=request.cpu_seconds + 2)
    _lower(resource.RLIMIT_FSIZE, 0)  # a parser has nothing to write; stdout is a pipe, not a file
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write attempt fails with EFBIG instead of killing us


def _lower(which: int, value: int, hard: int | None = None) -> None:
    """Set the soft limit to `value` and the hard one to `hard` (default: `value`), never above the current hard."""
    _soft, current = resource.getrlimit(which)
    new_hard = value if hard is None else hard
    if current != resource.RLIM_INFINITY:
        value, new_hard = min(value, current), min(new_hard, current)
    resource.setrlimit(which, (value, new_hard))


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # pypdf warns once per oddity; a hostile file has millions, and the sandbox reads stderr only after a crash
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    request = msgspec.json.decode(stdin.readline(MAX_HEADER), type=Request)
    apply_limits(request)
    reply = run(stdin.read(), request)
    stdout.write(msgspec.json.encode(reply))
    stdout.flush()
    return 0


def run(data: bytes, request: Request) -> Reply:
    # imported under the limits: a parser's import-time code is covered too
    from flexi.rag.loaders import load

    try:
        return Reply(document=load(data, request.name, max_pages=request.max_pages,
                                   max_unpacked_bytes=request.max_unpacked_bytes))
    except ParseError as exc:
        return Reply(error=exc.kind, detail=exc.detail[:500])  # the sandbox fills in the message's values
    except MemoryError:
        return Reply(error="memory", detail="MemoryError")
    except RecursionError:
        return Reply(error="corrupt", detail="nesting too deep")
    except Exception as exc:  # any parser bug on a hostile file is that file's problem, reported as such
        return Reply(error="corrupt", detail=f"{type(exc).__name__}: {exc}"[:500])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except msgspec.DecodeError as exc:
        sys.stderr.write(f"bad request: {exc}\n")
        sys.exit(2)
