"""Asking a backend now whether it answers and which models it offers (`/admin/backends/{name}/check`).

OpenAI-dialect engines list their models at `<base>/models` (vLLM, llama-server, cloud services), Ollama
and Flexi at `/api/tags`. The answer says how long the listing took and which of the models Flexi
expects there are missing, so an administrator sees a wrong URL, key or model name before users do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from flexi.config import BackendConfig
from flexi.engine.remote.wire import status_failure, transport_failure

PROBE_SECONDS = 10.0


@dataclass
class ProbeResult:
    reachable: bool
    latency_ms: float | None = None
    listed: list[str] = field(default_factory=list)  # the engine's own model names
    missing: list[str] = field(default_factory=list)  # configured (engine) names the engine does not list
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"reachable": self.reachable, "latency_ms": self.latency_ms, "models": self.listed,
                "missing": self.missing, "error": self.error}


def _names(config: BackendConfig, data: Any) -> list[str] | None:
    """The model names in a listing, or None when it is not one."""
    rows = data.get("models" if config.kind in ("ollama", "flexi") else "data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return None
    names = []
    for row in rows:
        name = row.get("model") or row.get("name") or row.get("id") if isinstance(row, dict) else None
        if isinstance(name, str):
            names.append(name)
    return names


def _served(wanted: str, listed: set[str]) -> bool:
    return wanted in listed or (":" not in wanted and f"{wanted}:latest" in listed)


async def probe(config: BackendConfig, timeout: float = PROBE_SECONDS) -> ProbeResult:
    """List the backend's models once, with a fresh connection (the request path's pool is left alone)."""
    headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"} if config.api_key else {}
    path = "/api/tags" if config.kind in ("ollama", "flexi") else "models"
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=config.url, headers=headers, follow_redirects=False,
                                 timeout=httpx.Timeout(timeout)) as client:
        try:
            resp = await client.get(path)
        except httpx.HTTPError as exc:
            return ProbeResult(False, error=transport_failure(config.name, exc).message)
    latency = round((time.perf_counter() - start) * 1000, 1)
    if resp.status_code >= 400:
        return ProbeResult(True, latency, error=status_failure(config.name, resp.status_code, resp.content).message)
    try:
        names = _names(config, resp.json())
    except ValueError:
        names = None
    if names is None:
        return ProbeResult(True, latency, error=f'backend "{config.name}" sent a model list Flexi cannot read')
    listed = set(names)
    missing = sorted({theirs for theirs in config.models.values() if not _served(theirs, listed)})
    return ProbeResult(True, latency, sorted(listed), missing)
