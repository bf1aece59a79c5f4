"""Terminal output: consoles, borderless tables, and progress for pulls and uploads.

Consoles are built at call time so they follow the current sys.stdout/sys.stderr
(the test runner swaps them). Off a terminal they are wide, so tables never wrap.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from flexi.cli.format import short_digest


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    is_tty = stream.isatty() if hasattr(stream, "isatty") else False
    return Console(
        file=stream, stderr=stderr, markup=False, highlight=False, emoji=False,
        width=None if is_tty else 1000, soft_wrap=not is_tty,
    )


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A borderless, left-aligned table like Ollama's (four spaces between columns)."""
    table = Table(box=None, pad_edge=False, padding=(0, 2), show_edge=False, header_style="none")
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    out = console()
    with out.capture() as captured:
        out.print(table)
    lines = captured.get().splitlines()
    out.file.write("".join(line.rstrip() + "\n" for line in lines))
    out.file.flush()


def _progress(out: Console, transient: bool = False) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        TaskProgressColumn(),
        BarColumn(bar_width=30),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=out,
        transient=transient,
    )


class PullDisplay:
    """Renders streamed pull/create events: one bar per digest, status lines in order.

    Bars live while digest events arrive; the next plain status closes them so the
    output reads top to bottom like Ollama's.
    """

    def __init__(self, out: Console | None = None) -> None:
        self.out = out or console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._last_status: str | None = None

    def update(self, event: dict[str, Any]) -> None:
        digest, total = event.get("digest"), event.get("total")
        if digest and total:
            if self._progress is None:
                self._progress = _progress(self.out)
                self._progress.start()
                self._tasks = {}
            task = self._tasks.get(digest)
            if task is None:
                label = f"pulling {short_digest(digest)}"
                task = self._tasks[digest] = self._progress.add_task(label, total=total)
            self._progress.update(task, total=total, completed=event.get("completed") or 0)
            return
        status = event.get("status")
        if status and not digest and status != self._last_status:
            self._close_bars()
            self.out.print(status)
            self._last_status = status

    def _close_bars(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        self._close_bars()

    def __enter__(self) -> "PullDisplay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ByteProgress:
    """One progress bar for local work on a file (hashing, uploading)."""

    def __init__(self, label: str, total: int, transient: bool = False) -> None:
        self._progress = _progress(console(stderr=True), transient=transient)
        self._task = self._progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def __enter__(self) -> "ByteProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
