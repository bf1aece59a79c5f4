"""Everything the app holds for its lifetime, created in the lifespan (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass

from flexi.access.service import AccessService
from flexi.config import Settings
from flexi.energy.service import EnergyService
from flexi.observability.metrics import Metrics
from flexi.rag.library import DocumentLibrary
from flexi.service.aliases import ModelAliasTable
from flexi.service.backend_sync import BackendSync
from flexi.scheduler.manager import ModelManager
from flexi.service.generation import GenerationService
from flexi.store.store import ModelStore


@dataclass
class AppState:
    settings: Settings
    store: ModelStore
    manager: ModelManager
    access: AccessService
    generation: GenerationService
    documents: DocumentLibrary
    metrics: Metrics | None = None  # None when FLEXI_METRICS is off
    energy: EnergyService | None = None  # None when FLEXI_ENERGY is off
    backends: BackendSync | None = None  # remote backends: config.toml's and those admins add at run time
    aliases: ModelAliasTable | None = None  # model aliases: config.toml's and those admins add at run time
