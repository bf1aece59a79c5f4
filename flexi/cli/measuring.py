"""What every measuring command (`flexi bench`, `flexi eval`, …) does around its run: the same exit codes for a
refused run (1) and Ctrl-C (130), and the report written as JSON plus Markdown next to each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from flexi.i18n import t

T = TypeVar("T")


def run_measurement(run: Callable[[], T], refusals: tuple[type[Exception], ...]) -> T:
    """The run's result; a refusal (bad arguments, unreachable server) exits 1 with its message, Ctrl-C 130."""
    try:
        return run()
    except refusals as exc:
        typer.echo(t("error", message=str(exc)), err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(t("error", message=t("interrupted")), err=True)
        raise typer.Exit(130) from None


def write_report(doc: dict[str, Any], out_dir: Path, stem: str, markdown: str) -> None:
    """`<stem>.json` and `<stem>.md` in `out_dir`."""
    from flexi.bench.report import write_json

    write_json(doc, out_dir / f"{stem}.json")
    (out_dir / f"{stem}.md").write_text(markdown, encoding="utf-8")


def output_dir(out: Path | None, stem: str) -> Path:
    """`out`, or `<stem>-<timestamp>` in the working directory, created; a directory that cannot be made exits 1."""
    from datetime import datetime

    path = out if out is not None else Path(f"{stem}-{datetime.now():%Y%m%d-%H%M%S}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(t("error", message=t("out_dir", path=path, detail=exc.strerror or exc)), err=True)
        raise typer.Exit(1) from None
    return path
