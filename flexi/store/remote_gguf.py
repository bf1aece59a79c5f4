"""GGUF facts of a model not yet pulled: read only the file's header with HTTP range requests.

`flexi plan hf.co/ORG/REPO:QUANT` needs the architecture, layer and head counts and the file size, not
gigabytes of weights. The name resolves exactly as a pull resolves it (`pull.hf_source`: the repo
tree picks the file and gives its size), and every request goes through the pull guard
(`netguard.guarded_client`: public addresses only unless FLEXI_PULL_ALLOW_HOSTS names the host). We ask
for the first bytes, and as long as the metadata goes on past them, for four times as many, up to
gguf_meta.MAX_METADATA_BYTES. A server that ignores Range (200 instead of 206) is read only up to the
wanted size, then the connection is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from flexi.engine.types import BadRequest, EngineError
from flexi.store.gguf_meta import (
    MAX_METADATA_BYTES,
    GGUFInfo,
    InvalidModelFile,
    MetadataIncomplete,
    info_from_prefix,
)
from flexi.store.names import parse_model_name
from flexi.store.netguard import guarded_client
from flexi.store.pull import TIMEOUT, hf_source, policy_from, url_source

FIRST_RANGE = 1024 * 1024  # SmolLM2's metadata (49k-token vocabulary): 2.2 MB; a Llama 3 file's: ~8 MB
_CONTENT_RANGE = re.compile(r"bytes\s+\d+-\d+/(\d+)")


@dataclass(frozen=True)
class RemoteModel:
    """What the header of a remote GGUF says, and how much of it we read."""

    label: str  # the file's name (repo path or URL file name)
    url: str
    size: int
    info: GGUFInfo
    bytes_read: int


async def _prefix(client: httpx.AsyncClient, url: str, want: int) -> tuple[bytes, int | None]:
    """The file's first `want` bytes (fewer at its end) and its total size when the server says it."""
    async with client.stream("GET", url, headers={"Range": f"bytes=0-{want - 1}", "Accept-Encoding": "identity"},
                             follow_redirects=True) as resp:
        if resp.status_code not in (200, 206):
            raise EngineError(f"reading {url.rsplit('/', 1)[-1]} failed: HTTP {resp.status_code}", status=502,
                              code="download_failed")
        total: int | None = None
        match = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if resp.status_code == 206 and match:
            total = int(match.group(1))
        elif resp.status_code == 200 and resp.headers.get("content-length", "").isdigit():
            total = int(resp.headers["content-length"])
        chunks, got = [], 0
        async for chunk in resp.aiter_bytes():
            chunks.append(chunk)
            got += len(chunk)
            if got >= want:
                break  # a server that ignored Range: stop reading, the connection is closed with the stream
    return b"".join(chunks)[:want], total


async def read_header(client: httpx.AsyncClient, url: str, size: int | None, label: str) -> RemoteModel:
    """Grow the ranged read until the GGUF metadata parses; InvalidModelFile if it is not a GGUF."""
    want = FIRST_RANGE
    while True:
        buf, total = await _prefix(client, url, want if size is None else min(want, size))
        size = size or total
        if size is None:
            raise EngineError(f"the server did not say how large {label} is", status=502, code="download_failed")
        try:
            return RemoteModel(label, url, size, info_from_prefix(buf, size), len(buf))
        except MetadataIncomplete:
            if len(buf) < min(want, size):
                raise InvalidModelFile("the server sent less than asked for") from None
            if want >= MAX_METADATA_BYTES:
                raise InvalidModelFile(f"metadata larger than {MAX_METADATA_BYTES >> 20} MB") from None
            want = min(want * 4, MAX_METADATA_BYTES)


async def read_remote_info(name: str, settings: Any, *, insecure: bool = False,
                           client: httpx.AsyncClient | None = None) -> RemoteModel:
    """GGUF facts of `hf.co/ORG/REPO[:QUANT]` or an http(s) URL of a .gguf, resolved as `pull` would."""
    is_url = name.lower().startswith(("http://", "https://"))
    endpoint = getattr(settings, "hf_endpoint", None) or "https://huggingface.co"
    policy = policy_from(settings, insecure=insecure and is_url)
    if not is_url:
        policy = policy.with_host(httpx.URL(endpoint).host)
    http = client or guarded_client(policy, TIMEOUT)
    try:
        if is_url:
            src = url_source(name, insecure=insecure, policy=policy)
        else:
            model_name = parse_model_name(name)
            if not model_name.is_huggingface:
                raise BadRequest(f'"{name}" is not installed; plan a model not yet pulled as hf.co/<org>/<repo>[:quant] '
                                 "or an https:// URL of a .gguf file", param="model")
            src = await hf_source(http, endpoint, model_name)
        return await read_header(http, src.url, src.size, src.label)
    finally:
        if client is None:
            await http.aclose()
