"""A small synchronous client for a Flexi server's Ollama API.

Every failure the user should see becomes a `CLIError` with a message in their
language: connection refused, timeouts, HTTP errors (the server's `error` text),
and `{"error": ...}` lines inside NDJSON streams.
"""

from __future__ import annotations

import json
import mimetypes
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx

from flexi import __version__
from flexi.i18n import env_locale, t
from flexi.config import server_url

_CHUNK = 1 << 20


class CLIError(Exception):
    """A failure shown as "Error: <message>" with exit code 1."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_message(response: httpx.Response) -> str:
    """The server's `error` text (Ollama or OpenAI shape), else the status line."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            err = err.get("message")
        if isinstance(err, str) and err:
            return err
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
    text = response.text.strip()
    if text and len(text) < 300 and not text.startswith("<"):
        return text
    return t("http_status", status=response.status_code, reason=response.reason_phrase)


class Client:
    """HTTP calls to one Flexi server; use as a context manager or call close()."""

    def __init__(self, base_url: str | None = None, *, connect_timeout: float = 10.0, api_key: str | None = None) -> None:
        self.base_url = base_url or server_url()
        headers = {"User-Agent": f"flexi-cli/{__version__}", "Accept": "application/x-ndjson, application/json"}
        api_key = api_key or os.environ.get("FLEXI_API_KEY")
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if any(os.environ.get(name) for name in ("LC_ALL", "LC_MESSAGES", "LANG")):
            headers["Accept-Language"] = env_locale()  # the server's messages in the shell's language
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(None, connect=connect_timeout)
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError:
            raise CLIError(t("connect", url=self.base_url)) from None
        except httpx.TimeoutException:
            raise CLIError(t("timeout", url=self.base_url)) from None
        except httpx.TransportError as exc:
            raise CLIError(t("transport", url=self.base_url, detail=str(exc) or type(exc).__name__)) from None

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.is_error:
            raise CLIError(error_message(response), response.status_code)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the decoded JSON body ({} when empty)."""
        with self._transport_errors():
            response = self._http.request(method, path, json=body)
        self._check(response)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise CLIError(t("bad_stream", line=response.text[:200])) from None

    def text(self, path: str) -> str:
        """A GET whose body is text (e.g. Prometheus metrics)."""
        with self._transport_errors():
            response = self._http.get(path, headers={"Accept": "text/plain"})
        self._check(response)
        return response.text

    def post_files(self, path: str, field: str, files: Sequence[Path]) -> Any:
        """POST `files` as multipart parts that all carry the form field `field`; the decoded JSON body."""
        with ExitStack() as stack, self._transport_errors():
            parts = [(field, (f.name, stack.enter_context(f.open("rb")),
                              mimetypes.guess_type(f.name)[0] or "application/octet-stream")) for f in files]
            response = self._http.post(path, files=parts)
        self._check(response)
        try:
            return response.json()
        except ValueError:
            raise CLIError(t("bad_stream", line=response.text[:200])) from None

    def stream(self, method: str, path: str, body: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """The NDJSON events of a streaming endpoint; an `error` event raises CLIError."""
        with self._transport_errors():
            with self._http.stream(method, path, json=body) as response:
                if response.is_error:
                    response.read()
                    self._check(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise CLIError(t("bad_stream", line=line[:200])) from None
                    if isinstance(event, dict) and event.get("error"):
                        raise CLIError(str(event["error"]))
                    yield event

    # --- convenience wrappers --------------------------------------------
    def show(self, model: str, verbose: bool = False) -> dict[str, Any]:
        return self.request("POST", "/api/show", {"model": model, "verbose": verbose})

    def version(self) -> str:
        return str(self.request("GET", "/api/version").get("version", ""))

    def blob_exists(self, digest: str) -> bool:
        with self._transport_errors():
            response = self._http.head(f"/api/blobs/{digest}")
        if response.status_code == 404:
            return False
        self._check(response)
        return True

    def upload_blob(self, digest: str, path: Path, on_chunk: Callable[[int], object] | None = None) -> None:
        """Stream the file body to POST /api/blobs/<digest> with an explicit Content-Length."""
        size = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    if on_chunk:
                        on_chunk(len(chunk))
                    yield chunk

        with self._transport_errors():
            response = self._http.post(
                f"/api/blobs/{digest}",
                content=chunks(),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
        self._check(response)
