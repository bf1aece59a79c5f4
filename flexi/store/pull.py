"""`pull`: download a GGUF model into the store, resumably, reporting like Ollama.

Sources: `hf.co/ORG/REPO[:QUANT]` (also `huggingface.co/...`) and plain
`https://…/file.gguf[#sha256=<hex>]` URLs (`http://` only for hosts in
`FLEXI_PULL_ALLOW_HOSTS`, or public hosts with `insecure=True`). Every connection
goes through `netguard`: private, loopback, link-local and metadata addresses are
refused after DNS and on every redirect unless the allow-list names them; an
https URL never redirects to http; a download stops at `FLEXI_PULL_MAX_BYTES`.
What went wrong upstream (status, body, connection error) is logged, never sent
to the caller: that would make pulls a port scanner. Bytes go to `blobs/sha256-<key>-partial`; a later pull
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
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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
from .netguard import MAX_REDIRECTS, HostPolicy, guarded_client
from .store import ModelRecord, ModelStore

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

ProgressFn = Callable[[dict[str, Any]], Awaitable[None] | None]
PROGRESS_INTERVAL = 0.2  # seconds between `pulling` events while bytes flow
TIMEOUT = httpx.Timeout(30.0, read=120.0)
DEFAULT_MAX_BYTES = 128 * 1024**3  # see Settings.pull_max_bytes
log = logging.getLogger("flexi.pull")


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


def policy_from(settings: Any, *, insecure: bool = False) -> HostPolicy:
    """The pull host policy from settings (`pull_allow_hosts`; absent = public hosts only)."""
    return HostPolicy.from_entries(getattr(settings, "pull_allow_hosts", None) or (), insecure=insecure)


def _failed(label: str, detail: str) -> EngineError:
    """The one answer callers get for any upstream trouble; the detail goes to the server log only."""
    log.warning("download of %s failed: %s", label, detail)
    return EngineError(f"download of {label} failed; pull again to resume (details are in the server log)",
                       status=502, code="download_failed")


def _name_from_stem(stem: str) -> ModelName:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem)
    text = re.sub(r"\.{2,}", ".", text).lstrip(".-")[:100] or "model"
    return parse_model_name(text).canonical()


def url_source(url: str, *, insecure: bool = False, as_name: str | None = None,
               policy: HostPolicy | None = None) -> Source:
    """Describe a plain URL download; refuses plain http unless the allow-list may name the host, or insecure."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BadRequest(f"invalid URL: {exc}", param="model") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadRequest("only http(s) URLs can be pulled", param="model")
    policy = policy or HostPolicy(insecure=insecure)
    allow_http = insecure or policy.may_allow_http(parsed.host)
    if parsed.scheme == "http" and not allow_http:
        raise BadRequest("plain http is only allowed for hosts in FLEXI_PULL_ALLOW_HOSTS; use https", param="insecure")
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
                 progress_id: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.client, self.src, self.emit, self.progress_id = client, src, emit, progress_id
        self.max_bytes = max_bytes
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
        if size is not None and size > self.max_bytes:
            raise self._too_big()
        try:
            await self._get(f, offset, retry_on_416=True)
        except httpx.HTTPError as exc:
            raise _failed(self.src.label, f"{type(exc).__name__}: {exc}") from None
        finally:
            f.flush()
        have = f.seek(0, 2)
        if size is not None and have != size:
            raise EngineError(f"download of {self.src.label} incomplete ({have} of {size} bytes); pull again to resume",
                              status=502, code="download_failed")

    def _too_big(self) -> EngineError:
        return EngineError(f"{self.src.label} is larger than the pull limit of {self.max_bytes / 1024**3:.0f} GiB "
                           "(FLEXI_PULL_MAX_BYTES)", status=413, code="download_too_large")

    @contextlib.asynccontextmanager
    async def _open(self, headers: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """GET the source, following at most MAX_REDIRECTS redirects ourselves: never from https to http.

        Each hop is a new request through the guarded client, so its address is checked again.
        """
        request = self.client.build_request("GET", self.src.url, headers=headers)
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self.client.send(request, stream=True, follow_redirects=False)
            following = resp.next_request if resp.is_redirect else None
            if following is None:
                try:
                    yield resp
                finally:
                    await resp.aclose()
                return
            await resp.aclose()
            if request.url.scheme == "https" and following.url.scheme != "https":
                raise _failed(self.src.label, f"refused a redirect from https to {following.url}")
            request = following
        raise _failed(self.src.label, f"more than {MAX_REDIRECTS} redirects")

    async def _get(self, f: IO[bytes], offset: int, retry_on_416: bool) -> None:
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        async with self._open(headers) as resp:
            if resp.status_code == 416 and offset and retry_on_416:
                f.truncate(0)  # our partial does not fit the remote file: start over
                return await self._get(f, 0, retry_on_416=False)
            if resp.status_code == 206 and offset:
                start = re.match(r"bytes (\d+)-", resp.headers.get("content-range", ""))
                if not start or int(start.group(1)) != offset:
                    raise _failed(self.src.label, "the server answered a different byte range than asked")
            elif resp.status_code == 200:
                if offset:  # server ignored Range: start over
                    f.truncate(0)
                    offset = 0
            else:
                body = b""
                async for chunk in resp.aiter_raw():  # a little of the body for the log; never all of it
                    body += chunk
                    if len(body) >= 200:
                        break
                raise _failed(self.src.label, f"{resp.url} answered {resp.status_code}: {body[:200]!r}")
            length = resp.headers.get("content-length")
            declared = int(length) if length and length.isdigit() else None
            if declared is not None and offset + declared > self.max_bytes:
                raise self._too_big()
            total = offset + declared if declared is not None else self.src.size
            limit = min(x for x in (self.max_bytes, self.src.size, total) if x is not None)
            completed, last = offset, time.monotonic()
            await self.event(completed, total)
            async for chunk in resp.aiter_raw():  # no chunk_size: httpx would drop a buffered tail on errors
                f.write(chunk)
                completed += len(chunk)
                if completed > limit:  # more than announced, or past the cap: stop now, keep nothing
                    f.truncate(0)
                    if limit == self.max_bytes:
                        raise self._too_big()
                    raise _failed(self.src.label, f"the server sent more than the announced {limit} bytes")
                if time.monotonic() - last >= PROGRESS_INTERVAL:
                    await self.event(completed, total)
                    last = time.monotonic()
            f.flush()
            await self.event(completed, total if total is not None else completed)


async def fetch_blob(blobs: BlobStore, client: httpx.AsyncClient, src: Source,
                     emit: Callable[[dict[str, Any]], Awaitable[None]], max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Download (or resume) a source into the blob store, verified; returns its digest."""
    key = src.expected[7:] if src.expected else hashlib.sha256(src.url.encode()).hexdigest()
    progress_id = src.expected or f"sha256:{key}"
    if src.expected and blobs.has_blob(src.expected):
        size = blobs.size(src.expected)
        await _Downloader(client, src, emit, progress_id).event(size, size)
        return src.expected
    partial = blobs.partial_path(key)
    with _open_partial(partial) as f:
        await _Downloader(client, src, emit, progress_id, max_bytes).run(f)
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
    """Pull `name` (hf.co/… or an http(s) URL of a .gguf) into `store`.

    `settings` may carry `hf_endpoint`, `pull_allow_hosts` and `pull_max_bytes`. The configured
    Hugging Face endpoint is trusted like an allow-listed host (an admin chose it; it may be a campus mirror).
    """
    emit = _emitter(progress)
    await emit({"status": "pulling manifest"})
    is_url = name.lower().startswith(("http://", "https://"))
    endpoint = getattr(settings, "hf_endpoint", None) or "https://huggingface.co"
    policy = policy_from(settings, insecure=insecure and is_url)
    if not is_url:
        policy = policy.with_host(httpx.URL(endpoint).host)
    max_bytes = getattr(settings, "pull_max_bytes", None) or DEFAULT_MAX_BYTES
    own_client = client is None
    http = client or guarded_client(policy, TIMEOUT)
    try:
        if is_url:
            src = url_source(name, insecure=insecure, as_name=as_name, policy=policy)
        else:
            model_name = parse_model_name(name)
            if not model_name.is_huggingface:
                if store.exists(model_name):  # nothing to update: there is no registry to ask
                    await emit({"status": "success"})
                    return store.get(model_name)
                raise BadRequest(f'cannot pull "{name}": use hf.co/<org>/<repo>[:quant] or an https:// URL '
                                 "of a .gguf file", param="model")
            src = await hf_source(http, endpoint, model_name, as_name)
        digest = await fetch_blob(store.blobs, http, src, emit, max_bytes)
        await emit({"status": "writing manifest"})
        record = await asyncio.to_thread(store.create_from_blob, src.name, digest)
        await emit({"status": "success"})
        return record
    finally:
        if own_client:
            await http.aclose()
