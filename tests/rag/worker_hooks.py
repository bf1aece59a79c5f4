"""A parse worker that misbehaves on purpose: `python worker_hooks.py MODE` runs the real
`flexi.rag.parse_worker.main` (same request, same limits) with the loader replaced by MODE's misdeed."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

import flexi.rag.loaders
from flexi.rag import parse_worker
from flexi.rag.document import ParsedDocument, Section


def _document(text: str) -> ParsedDocument:
    return ParsedDocument(title="hook", format="text", sections=[Section(text=text)])


def segfault(data: bytes, name: str, **_: int) -> ParsedDocument:
    ctypes.string_at(0)  # a native parser bug: SIGSEGV
    raise AssertionError("unreachable")


def killed(data: bytes, name: str, **_: int) -> ParsedDocument:
    os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    raise AssertionError("unreachable")


def exits(data: bytes, name: str, **_: int) -> ParsedDocument:
    os._exit(3)  # a native library calling exit()


def hog(data: bytes, name: str, **_: int) -> ParsedDocument:
    block = bytearray(3 * 1024**3)  # lazily mapped: without an address-space limit this succeeds
    return _document(f"allocated {len(block)} bytes")


def spin(data: bytes, name: str, **_: int) -> ParsedDocument:
    while True:
        pass


def sleep(data: bytes, name: str, **_: int) -> ParsedDocument:
    time.sleep(120)
    return _document("woke up")


def write(data: bytes, name: str, **_: int) -> ParsedDocument:
    try:
        with open(data.decode(), "wb") as target:  # the test names a path in its tmp dir
            target.write(b"written by the parser")
        return _document("write succeeded")
    except OSError as exc:
        return _document(f"write refused: {exc.strerror}")


def environment(data: bytes, name: str, **_: int) -> ParsedDocument:
    return _document(" ".join(sorted(os.environ)))


FORGED = {  # replies a taken-over parser could write instead of running the real main
    "forge_kind": b'{"error": "too_many_pages", "detail": "no limit value sent"}',
    "forge_garbage": b"\x00not json at all",
}

if __name__ == "__main__":
    if sys.argv[1] in FORGED:
        sys.stdout.buffer.write(FORGED[sys.argv[1]])
        sys.exit(0)
    flexi.rag.loaders.load = globals()[sys.argv[1]]
    sys.exit(parse_worker.main())
