"""The resident memory of a local Flexi server's runner processes for one model, read from /proc.

Why not /api/ps alone: its `size` is the server's admission estimate, not a measurement. When the server
runs on this machine (and as a user whose /proc entries we may read), the runners are found as children
of the process listening on the server's port, started as `python -m flexi.engine.runner --model
…/sha256-<hex>`; the blob comes from /api/show's modelfile when it reveals the path, else (the model being
the only one loaded) every runner of the server counts. Anything not found returns None and the caller falls
back to the estimate, labelled as such.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _listening_inodes(port: int, proc: Path = PROC) -> set[str]:
    inodes: set[str] = set()
    for name in ("net/tcp", "net/tcp6"):
        try:
            lines = proc.joinpath(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(parts[9])
    return inodes


def _pids(proc: Path = PROC) -> list[int]:
    return [int(p.name) for p in proc.iterdir() if p.name.isdigit()]


def server_pid(port: int, proc: Path = PROC) -> int | None:
    """The process holding the listening socket on `port`, if we may see its file descriptors."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in _pids(proc):
        try:
            for fd in proc.joinpath(str(pid), "fd").iterdir():
                if os.readlink(fd) in targets:
                    return pid
        except OSError:
            continue
    return None


def _status(pid: int, proc: Path) -> dict[str, str]:
    out = {}
    for line in proc.joinpath(str(pid), "status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _kib(value: str) -> int:
    return int(value.split()[0]) * 1024


def runner_memory(port: int, blob: str | None, proc: Path = PROC) -> dict[str, int] | None:
    """Summed RSS and peak RSS (bytes) of the runners of the server on `port` whose model file is named `blob`
    (`sha256-<hex>`; None: all of its runners)."""
    parent = server_pid(port, proc)
    if parent is None:
        return None
    rss = peak = found = 0
    for pid in _pids(proc):
        try:
            status = _status(pid, proc)
            if status.get("PPid") != str(parent):
                continue
            args = proc.joinpath(str(pid), "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"flexi.engine.runner" not in args or (
                blob is not None and not any(a.endswith(blob.encode()) for a in args)):
            continue
        try:
            rss += _kib(status["VmRSS"])
            peak += _kib(status.get("VmHWM", status["VmRSS"]))
        except (KeyError, ValueError, IndexError):
            continue
        found += 1
    return {"rss_bytes": rss, "peak_rss_bytes": peak, "runners": found} if found else None
