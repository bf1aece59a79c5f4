"""Errors the runner reports back to the server for one request.

Its own module so the engine and its helpers (the embedder) can both raise it
without importing each other.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the runner refuses (bad input, not a crash); `status` is the HTTP status the server sends."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
