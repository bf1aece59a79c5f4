"""Finding the GGUF file to pull in a Hugging Face repository.

`hf.co/ORG/REPO:QUANT` names a repository and a quantization; the repository's
file tree (`/api/models/ORG/REPO/tree/main`) tells which `.gguf` file that is,
its size and its sha256 (`lfs.oid`), which the download is verified against.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import httpx

from flexi.engine.types import BadRequest, EngineError

from .names import ModelName

log = logging.getLogger("flexi.pull")
DEFAULT_QUANTS = ("Q4_K_M",)  # what `latest` means, like Ollama
MAX_TREE_PAGES = 50
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
_QUANT_LABEL = re.compile(r"(?<![A-Za-z0-9])(I?Q\d+(?:_[A-Za-z0-9]+)*|BF16|F16|F32)(?![A-Za-z0-9])", re.IGNORECASE)


def repo_id(name: ModelName) -> str:
    return f"{name.namespace}/{name.model}"


def resolve_url(endpoint: str, repo: str, path: str) -> str:
    return f"{endpoint.rstrip('/')}/{repo}/resolve/main/{quote(path)}"


def _upstream_error(message: str, status: int = 502) -> EngineError:
    return EngineError(message, status=status, code="model_not_found" if status == 404 else "download_failed")


async def list_repo_files(client: httpx.AsyncClient, endpoint: str, repo: str) -> list[dict[str, Any]]:
    """All files of a repository (recursive, following `Link: rel=next` pages)."""
    url: str | None = f"{endpoint.rstrip('/')}/api/models/{repo}/tree/main?recursive=true"
    entries: list[dict[str, Any]] = []
    for _ in range(MAX_TREE_PAGES):
        if url is None:
            break
        try:
            resp = await client.get(url, follow_redirects=True)
        except httpx.HTTPError as exc:  # the detail goes to the log: pull errors must not map the network
            log.warning("listing %s at %s failed: %s: %s", repo, endpoint, type(exc).__name__, exc)
            raise _upstream_error(f"cannot reach Hugging Face ({endpoint}); details are in the server log") from None
        if resp.status_code in (401, 403, 404):
            raise _upstream_error(f"Hugging Face repository {repo} not found (or it is private or gated)", 404)
        if resp.status_code != 200:
            raise _upstream_error(f"Hugging Face answered {resp.status_code} listing {repo}")
        try:
            page = resp.json()
        except ValueError:
            page = None
        if not isinstance(page, list):
            raise _upstream_error(f"Hugging Face sent an unreadable file list for {repo}")
        entries.extend(e for e in page if isinstance(e, dict))
        url = resp.links.get("next", {}).get("url")
    return entries


def _quant_pattern(quant: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(quant)}(?![A-Za-z0-9_])", re.IGNORECASE)


def _basename(entry: dict[str, Any]) -> str:
    return str(entry["path"]).rsplit("/", 1)[-1]


def quant_labels(entries: list[dict[str, Any]]) -> list[str]:
    """Quantizations offered, for the error message ('Q4_K_M, Q8_0'); file names where none is visible."""
    labels = []
    for entry in entries:
        found = _QUANT_LABEL.findall(_basename(entry)[: -len(".gguf")])
        label = found[-1].upper() if found else _basename(entry)
        if label not in labels:
            labels.append(label)
    return labels


def choose_gguf(entries: list[dict[str, Any]], tag: str, repo: str) -> dict[str, Any]:
    """The file entry for a tag: the quant as a whole word in its path; `latest` prefers Q4_K_M."""
    ggufs = [
        e for e in entries
        if e.get("type") == "file" and isinstance(e.get("path"), str)
        and e["path"].lower().endswith(".gguf") and "mmproj" not in _basename(e).lower()
    ]
    if not ggufs:
        raise BadRequest(f"no GGUF files in Hugging Face repository {repo}", param="model")
    singles = [e for e in ggufs if not _SPLIT.search(e["path"])]
    wanted = DEFAULT_QUANTS if tag.lower() == "latest" else (tag,)
    for quant in wanted:
        matches = [e for e in singles if _quant_pattern(quant).search(e["path"])]
        if matches:
            return matches[0]
    if tag.lower() == "latest" and singles:
        return singles[0]
    if any(_quant_pattern(q).search(e["path"]) for q in wanted for e in ggufs) or not singles:
        raise BadRequest(f"{repo} has only split GGUF files (…-00001-of-0000N.gguf) for {tag}; "
                         "those are not supported yet", param="model")
    raise BadRequest(f'no GGUF file for quantization "{tag}" in {repo}; available: {", ".join(quant_labels(singles))}',
                     param="model")
