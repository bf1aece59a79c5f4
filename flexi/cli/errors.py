"""How every HTTP-client command of the CLI fails: "Error: <message>" on stderr and exit 1
(Ctrl-C: exit 130), never a traceback. Shared by `flexi.cli.main` and its command groups."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import typer

from flexi.cli.client import CLIError
from flexi.i18n import t

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(t("error", message=message), err=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn CLIError into "Error: …" + exit 1 and Ctrl-C into exit 130, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CLIError as exc:
            raise fail(exc.message) from None
        except KeyboardInterrupt:
            typer.echo("", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
