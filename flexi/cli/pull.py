"""Pulling models: `flexi pull` and the automatic pull before `flexi run`."""

from __future__ import annotations

from flexi.cli.client import CLIError, Client
from flexi.cli.ui import PullDisplay


def pull_model(client: Client, model: str, insecure: bool = False) -> None:
    """POST /api/pull and render its streamed progress on stderr."""
    body = {"model": model, "insecure": insecure, "stream": True}
    with PullDisplay() as display:
        for event in client.stream("POST", "/api/pull", body):
            display.update(event)


def ensure_model(client: Client, model: str, insecure: bool = False) -> None:
    """Pull `model` first if the server does not have it (404 from /api/show), like `ollama run`."""
    try:
        client.show(model)
    except CLIError as exc:
        if exc.status != 404:
            raise
        pull_model(client, model, insecure)
