"""The scheduler's live state as the metrics collector reads it at scrape time (`SchedulerView`)."""

from __future__ import annotations

from flexi.observability.metrics import LoadedModel, QueueState
from flexi.scheduler.manager import ModelManager


class ManagerView:
    """Reads a `ModelManager` without changing it; every call is a snapshot of plain numbers."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def loaded_models(self) -> list[LoadedModel]:
        return [LoadedModel(name=e.name, memory_bytes=e.size, replicas=len(e.replicas), active=e.active,
                            kv_running_cells=sum(r.runner.kv_cells[0] for r in e.replicas),
                            kv_held_cells=sum(r.runner.kv_cells[1] for r in e.replicas),
                            kv_capacity_cells=sum(r.runner.info.n_ctx * r.runner.info.n_parallel
                                                  for r in e.replicas if r.runner.info is not None))
                for e in self.manager.ps()]

    def queue_states(self) -> list[QueueState]:
        return [QueueState(model=name, running=q.in_use, waiting=q.waiting, capacity=q.capacity)
                for name, q in list(self.manager.queues.items())]

    def runner_restarts(self) -> dict[str, int]:
        return dict(self.manager.restarts)
