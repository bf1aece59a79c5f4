"""`/admin/aliases`: model names that stand for a real model (`gpt-4o` → `llama3.3`), managed at run time.

Aliases of config.toml (`source: "config"`) are listed but read-only; admins add, change and remove their
own (`source: "admin"`, stored in the database: `flexi.access.admin_ops.aliases`). A change applies
without a restart: this process reloads at once, other replicas within seconds (`ModelAliasTable`).
Refusals (a name that is a model already, an unknown target, a chain) come in the caller's language.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from flexi.access import admin_ops as ops
from flexi.campus.admin_common import AdminRoute, require_admin, transaction
from flexi.engine.types import EngineError
from flexi.http.app_state import generation_of, state_of
from flexi.http.caller import caller_of
from flexi.service.aliases import ModelAliasTable

router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, dependencies=[Depends(require_admin)])

ModelText = Annotated[str, Field(min_length=1, max_length=200)]
AliasName = Annotated[str, Path(min_length=1, max_length=200)]


class AliasCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: ModelText = Field(description="The alias, e.g. gpt-4o (a valid model name that is no model yet).")
    target: ModelText = Field(description="The model it stands for (a real model, not another alias).")


class AliasTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: ModelText


def _table(request: Request) -> ModelAliasTable:
    table = state_of(request).aliases
    if table is None:
        raise EngineError("model aliases are not available in this server", 503, "unavailable")
    return table


def _view(request: Request, entry: ops.AliasEntry) -> dict[str, Any]:
    """The alias, and whether its target exists now (a dangling alias answers 404 until it does again)."""
    generation = generation_of(request)
    return {**ops.alias_view(entry), "available": generation.alias_of(entry.name) is not None and
            generation.stored_model(entry.target) is not None}


async def _store(request: Request, name: str, target: str, replace: bool) -> dict[str, Any]:
    table, generation = _table(request), generation_of(request)
    caller = caller_of(request)

    def store() -> ops.AliasEntry:
        with transaction(request, caller.locale) as session:
            return ops.set_alias(session, name, target, model_exists=lambda n: generation.stored_model(n) is not None,
                                 configured=table.configured, replace=replace, created_by=caller.principal.user_id)

    entry = await asyncio.to_thread(store)
    await table.refresh()
    return _view(request, entry)


@router.get("/aliases", summary="List model aliases (config.toml's and admin-added ones)")
async def list_aliases(request: Request) -> dict[str, Any]:
    table = _table(request)
    await table.refresh(force=False)  # what another replica changed, too
    return {"aliases": [_view(request, e) for e in table.entries()]}


@router.post("/aliases", status_code=201, summary="Add a model alias (applies at once, no restart)")
async def add_alias(request: Request, body: AliasCreate) -> dict[str, Any]:
    return await _store(request, body.name, body.target, replace=False)


@router.put("/aliases/{name:path}", summary="Add a model alias or change its target")
async def put_alias(request: Request, name: AliasName, body: AliasTarget) -> dict[str, Any]:
    return await _store(request, name, body.target, replace=True)


@router.delete("/aliases/{name:path}", status_code=204, summary="Remove an admin-added model alias")
async def delete_alias(request: Request, name: AliasName) -> Response:
    table = _table(request)
    locale = caller_of(request).locale

    def remove() -> None:
        with transaction(request, locale) as session:
            ops.delete_alias(session, name, table.config_names)

    await asyncio.to_thread(remove)
    await table.refresh()
    return Response(status_code=204)
