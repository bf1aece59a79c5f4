"""`pull`: download a GGUF model into the store, resumably, reporting like Ollama.

Sources: `hf.co/ORG/REPO[:QUANT]` (also `huggingface.co/...`) and plain
`https://…/file.gguf[#sha256=<hex>]` URLs (`http://` only for loopback hosts or
with `insecure=True`). Bytes go to `blobs/sha256-<key>-partial`; a later pull
continues it with an HTTP Range request. Nothing is registered until the sha256
matched (when known) and the GGUF parsed cleanly.

Progress dicts are Ollama's pull stream: `pulling manifest`, then repeated
`pulling <12 hex>` with digest/total/completed, `verifying sha256 digest`,
`writing manifest`, `success`. When the sha256 is not known in advance, the
`digest` in the progress events is a stand-in (sha256 of the URL) that keys the
partial file; the model is stored under its real digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

import httpx

from flexi.engine.types import BadRequest, EngineError

from . import hf
from .blobs import BlobStore, sha256_file, validate_digest
from .gguf_meta import InvalidModelFile, read_gguf_info
from .names import ModelName, parse_model_name
from .store import ModelRecord, ModelStore

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

ProgressFn = Callable[[dict[str, Any]], Awaitable[None] | None]
PROGRESS_INTERVAL = 0.2  # seconds between `pulling` events while bytes flow
TIMEOUT = httpx.Timeout(30.0, read=120.0)


@dataclass
class Source:
    """What to download and how to check it."""

    url: str
    name: ModelName  # the name to register
    label: str  # shown in `pulling <label>`
    expected: str | None = None  # sha256:<hex>, when known
    size: int | None = None
    allow_http: bool = False
    mismatch_status: int = 400  # 400 when the user gave the digest, 502 when the upstream did


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _name_from_stem(stem: str) -> ModelName:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem)
    text = re.sub(r"\.{2,}", ".", text).lstrip(".-")[:100] or "model"
    return parse_model_name(text).canonical()


def url_source(url: str, *, insecure: bool = False, as_name: str | None = None) -> Source:
    """Describe a plain URL download; refuses plain http to non-loopback hosts unless insecure."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BadRequest(f"invalid URL: {exc}", param="model") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadRequest("only http(s) URLs can be pulled", param="model")
    allow_http = insecure or _is_loopback(parsed.host)
    if parsed.scheme == "http" and not allow_http:
        raise BadRequest("plain http is only allowed for loopback hosts; use https or insecure", param="insecure")
    expected = None
    if parsed.fragment:
        key, _, value = parsed.fragment.partition("=")
        if key != "sha256":
            raise BadRequest("the URL fragment may only be #sha256=<64 hex>", param="model")
        expected = validate_digest("sha256:" + value.lower())
    filename = unquote(parsed.path.rsplit("/", 1)[-1])
    stem = filename[:-5] if filename.lower().endswith(".gguf") else filename
    name = parse_model_name(as_name).canonical() if as_name else _name_from_stem(stem)
    return Source(str(parsed.copy_with(fragment=None)), name, filename or "model", expected,
                  allow_http=allow_http, mismatch_status=400)


async def hf_source(client: httpx.AsyncClient, endpoint: str, name: ModelName, as_name: str | None = None) -> Source:
    """Pick the GGUF for `hf.co/ORG/REPO:QUANT` and learn its size and sha256 from the repo tree."""
    repo = hf.repo_id(name)
    entry = hf.choose_gguf(await hf.list_repo_files(client, endpoint, repo), name.tag, repo)
    lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else {}
    oid, size = lfs.get("oid") or lfs.get("sha256"), lfs.get("size", entry.get("size"))
    try:
        expected = validate_digest(f"sha256:{oid}") if oid else None
    except BadRequest as exc:
        raise EngineError(f"Hugging Face sent a bad sha256 for {entry['path']}", status=502) from exc
    return Source(
        url=hf.resolve_url(endpoint, repo, entry["path"]),
        name=parse_model_name(as_name).canonical() if as_name else name.canonical(),
        label=entry["path"],
        expected=expected,
        size=size if isinstance(size, int) and size >= 0 else None,
        allow_http=endpoint.startswith("http://"),
        mismatch_status=502,
    )


@contextlib.contextmanager
def _open_partial(path: Path) -> Iterator[IO[bytes]]:
    """Open (creating) the partial file for appending, locked against a second pull of the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise EngineError("this model is already being downloaded", status=409,
                                  code="pull_in_progress") from exc
        yield f


class _Downloader:
    """One source into one partial file, emitting Ollama progress events."""

    def __init__(self, client: httpx.AsyncClient, src: Source, emit: Callable[[dict[str, Any]], Awaitable[None]],
                 progress_id: str) -> None:
        self.client, self.src, self.emit, self.progress_id = client, src, emit, progress_id
        short = src.expected[7:19] if src.expected else src.label
        self.status = f"pulling {short}"

    async def event(self, completed: int, total: int | None) -> None:
        event: dict[str, Any] = {"status": self.status, "digest": self.progress_id, "completed": completed}
        if total is not None:
            event["total"] = total
        await self.emit(event)

    async def run(self, f: IO[bytes]) -> None:
        offset = f.seek(0, 2)
        size = self.src.size
        if size is not None and offset > size:
            f.truncate(0)
            offset = 0
        if size is not None and offset == size:
            await self.event(size, size)
            return
        try:
            await self._get(f, offset, retry_on_416=True)
        except httpx.HTTPError as exc:
            raise EngineError(f"download of {self.src.label} failed ({type(exc).__name__}: {exc}); "
                              "pull again to resume", status=502, code="download_failed") from exc
        finally:
            f.flush()
        have = f.seek(0, 2)
        if size is not None and have != size:
            raise EngineError(f"download of {self.src.label} incomplete ({have} of {size} bytes); pull again to resume",
                              status=502, code="download_failed")

    async def _get(self, f: IO[bytes], offset: int, retry_on_416: bool) -> None:
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        async with self.client.stream("GET", self.src.url, headers=headers, follow_redirects=True) as resp:
            if resp.url.scheme == "http" and not self.src.allow_http:
                raise EngineError("refusing a redirect to plain http", status=502, code="download_failed")
            if resp.status_code == 416 and offset and retry_on_416:
                f.truncate(0)  # our partial does not fit the remote file: start over
                return await self._get(f, 0, retry_on_416=False)
            if resp.status_code == 206 and offset:
                start = re.match(r"bytes (\d+)-", resp.headers.get("content-range", ""))
                if not start or int(start.group(1)) != offset:
                    raise EngineError("server answered a different byte range than asked", status=502,
                                      code="download_failed")
            elif resp.status_code == 200:
                if offset:  # server ignored Range: start over
                    f.truncate(0)
                    offset = 0
            elif resp.status_code == 404:
                raise EngineError(f"{self.src.label} not found at {self.src.url}", status=404, code="model_not_found")
            else:
                raise EngineError(f"server answered {resp.status_code} for {self.src.label}", status=502,
                                  code="download_failed")
            length = resp.headers.get("content-length")
            total = offset + int(length) if length and length.isdigit() else self.src.size
            completed, last = offset, time.monotonic()
            await self.event(completed, total)
            async for chunk in resp.aiter_raw():  # no chunk_size: httpx would drop a buffered tail on errors
                f.write(chunk)
                completed += len(chunk)
                if self.src.size is not None and completed > self.src.size:
                    f.truncate(0)
                    raise EngineError(f"server sent more than the expected {self.src.size} bytes", status=502,
                                      code="download_failed")
                if time.monotonic() - last >= PROGRESS_INTERVAL:
                    await self.event(completed, total)
                    last = time.monotonic()
            f.flush()
            await self.event(completed, total if total is not None else completed)


async def fetch_blob(blobs: BlobStore, client: httpx.AsyncClient, src: Source,
                     emit: Callable[[dict[str, Any]], Awaitable[None]]) -> str:
    """Download (or resume) a source into the blob store, verified; returns its digest."""
    key = src.expected[7:] if src.expected else hashlib.sha256(src.url.encode()).hexdigest()
    progress_id = src.expected or f"sha256:{key}"
    if src.expected and blobs.has_blob(src.expected):
        size = blobs.size(src.expected)
        await _Downloader(client, src, emit, progress_id).event(size, size)
        return src.expected
    partial = blobs.partial_path(key)
    with _open_partial(partial) as f:
        await _Downloader(client, src, emit, progress_id).run(f)
        await emit({"status": "verifying sha256 digest"})
        digest = await asyncio.to_thread(sha256_file, partial)
        if src.expected and digest != src.expected:
            partial.unlink(missing_ok=True)
            raise EngineError(f"sha256 mismatch for {src.label}: expected {src.expected}, got {digest}",
                              status=src.mismatch_status, code="digest_mismatch")
        try:
            await asyncio.to_thread(read_gguf_info, partial)
        except InvalidModelFile:
            partial.unlink(missing_ok=True)
            raise
        blobs.adopt(partial, digest)
    return digest


def _emitter(progress: ProgressFn | None) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def emit(event: dict[str, Any]) -> None:
        if progress is not None:
            result = progress(event)
            if inspect.isawaitable(result):
                await result
    return emit


async def pull_model(store: ModelStore, name: str, settings: Any, *, progress: ProgressFn | None = None,
                     client: httpx.AsyncClient | None = None, insecure: bool = False,
                     as_name: str | None = None) -> ModelRecord:
    """Pull `name` (hf.co/… or an http(s) URL of a .gguf) into `store`; `settings` needs `.hf_endpoint`."""
    emit = _emitter(progress)
    await emit({"status": "pulling manifest"})
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=TIMEOUT)
    try:
        if name.lower().startswith(("http://", "https://")):
            src = url_source(name, insecure=insecure, as_name=as_name)
        else:
            model_name = parse_model_name(name)
            if not model_name.is_huggingface:
                if store.exists(model_name):  # nothing to update: there is no registry to ask
                    await emit({"status": "success"})
                    return store.get(model_name)
                raise BadRequest(f'cannot pull "{name}": use hf.co/<org>/<repo>[:quant] or an https:// URL '
                                 "of a .gguf file", param="model")
            endpoint = getattr(settings, "hf_endpoint", "https://huggingface.co")
            src = await hf_source(http, endpoint, model_name, as_name)
        digest = await fetch_blob(store.blobs, http, src, emit)
        await emit({"status": "writing manifest"})
        record = await asyncio.to_thread(store.create_from_blob, src.name, digest)
        await emit({"status": "success"})
        return record
    finally:
        if own_client:
            await http.aclose()
