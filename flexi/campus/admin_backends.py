"""`/admin/backends`: the remote engines Flexi serves models from, managed at run time.

Backends of config.toml (`source: "config"`) are listed but read-only; admins add and remove their own
(`source: "admin"`, stored in the database: `flexi.access.admin_ops.backends`). A change applies
without a restart: this process reloads at once, other replicas within seconds (`BackendSync`). The
body is validated by `BackendConfig` itself, so the API accepts exactly what a `[[backends]]` entry
may say; no answer ever contains an api_key. Checks probe the engine from here, where requests go.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import Field, field_validator

from flexi.access import admin_ops as ops
from flexi.campus.admin_common import AdminRoute, require_admin, transaction
from flexi.config import BackendConfig
from flexi.engine.remote.probe import probe
from flexi.engine.types import EngineError
from flexi.http.app_state import state_of
from flexi.http.caller import caller_of
from flexi.service.backend_sync import BackendSync
from flexi.store.names import InvalidModelName, parse_model_name

MAX_CONCURRENCY = 1024
BackendName = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, dependencies=[Depends(require_admin)])


class BackendCreate(BackendConfig):
    """A `[[backends]]` entry as JSON, with the bounds an API entry keeps (a file may say more)."""

    max_concurrency: int = Field(8, ge=1, le=MAX_CONCURRENCY, description="Most requests Flexi sends at once.")

    @field_validator("models")
    @classmethod
    def _flexi_names(cls, value: dict[str, str]) -> dict[str, str]:
        for ours in value:
            try:
                parse_model_name(ours)
            except InvalidModelName as exc:
                raise ValueError(f"{ours[:80]!r} is not a valid model name ({exc.message})") from None
        return value


def _sync(request: Request) -> BackendSync:
    sync = state_of(request).backends
    if sync is None:
        raise EngineError("remote backends are not available in this server", 503, "unavailable")
    return sync


def _all(sync: BackendSync) -> list[tuple[BackendConfig, str]]:
    stored = [c for c in sync.stored if c.name.lower() not in {n.lower() for n in sync.config_names}]
    return [(c, "config") for c in sync.configured] + [(c, "admin") for c in stored]


@router.get("/backends", summary="List remote backends (config.toml's and admin-added ones)")
async def list_backends(request: Request) -> dict[str, Any]:
    sync = _sync(request)
    await sync.refresh(force=False)  # what another replica changed, too
    health = {h["name"]: h for h in sync.remote.health()}  # this replica's view; disabled backends have none
    keys = ("up", "circuit", "in_flight", "last_error", "last_checked")
    return {"backends": [{**ops.backend_view(c, source), "health": {k: health[c.name][k] for k in keys}
                          if c.name in health else None} for c, source in _all(sync)]}


@router.post("/backends", status_code=201, summary="Add a remote backend (applies at once, no restart)")
async def add_backend(request: Request, body: BackendCreate) -> dict[str, Any]:
    sync = _sync(request)
    config = BackendConfig(**{name: getattr(body, name) for name in BackendConfig.model_fields})
    user_id = caller_of(request).principal.user_id

    def store() -> None:
        with transaction(request) as session:
            ops.add_backend(session, config, sync.config_names, created_by=user_id)

    await asyncio.to_thread(store)
    await sync.refresh()
    return ops.backend_view(config, "admin")


@router.delete("/backends/{name}", status_code=204, summary="Remove an admin-added backend (its running requests finish)")
async def delete_backend(request: Request, name: BackendName) -> Response:
    sync = _sync(request)

    def remove() -> None:
        with transaction(request) as session:
            ops.delete_backend(session, name, sync.config_names)

    await asyncio.to_thread(remove)
    await sync.refresh()
    return Response(status_code=204)


@router.post("/backends/{name}/check", summary="Probe a backend now: reachable, latency, models it lists")
async def check_backend(request: Request, name: BackendName) -> dict[str, Any]:
    sync = _sync(request)
    await sync.refresh(force=False)
    found = next(((c, s) for c, s in _all(sync) if c.name.lower() == name.lower()), None)
    if found is None:
        raise EngineError(f"backend {name!r} not found", 404, "not_found")
    config, source = found
    result = await probe(config)
    return {**ops.backend_view(config, source), **result.as_dict()}
