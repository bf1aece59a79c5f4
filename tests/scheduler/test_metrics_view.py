"""What /metrics reads from the scheduler: loaded models, queue depth and runner restarts (fake runners)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexi.engine.types import GenerationStats, RunnerCrashed
from flexi.scheduler import manager as manager_mod
from flexi.scheduler.metrics_view import ManagerView
from tests.scheduler.fakes import collect, fake_manager, req, until


async def test_the_view_shows_queue_depth_while_requests_wait(tmp_path: Path) -> None:
    async with fake_manager(tmp_path, num_parallel=1) as (manager, runners):
        view = ManagerView(manager)
        runners.hold("a")
        first = runners.spawn(manager, req("a", user="u1"))
        await until(lambda: runners.running("a") is not None)
        second = runners.spawn(manager, req("b", user="u2"))
        await until(lambda: manager.queues["m:latest"].waiting == 1)
        [state] = view.queue_states()
        assert (state.model, state.running, state.waiting, state.capacity) == ("m:latest", 1, 1, 1)
        [loaded] = view.loaded_models()
        assert (loaded.name, loaded.replicas, loaded.active) == ("m:latest", 1, 1) and loaded.memory_bytes > 0
        runners.release("a")
        assert isinstance((await first)[-1], GenerationStats) and isinstance((await second)[-1], GenerationStats)
        [state] = view.queue_states()
        assert (state.running, state.waiting) == (0, 0)


async def test_a_crashed_runner_counts_as_a_restart_and_an_orderly_unload_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "REAP_EVERY", 0.01)
    async with fake_manager(tmp_path) as (manager, runners):
        view = ManagerView(manager)
        await collect(manager, req("x"))
        await manager.unload("m:latest")
        assert view.runner_restarts() == {} and view.loaded_models() == []
        runners.hold("doomed")
        doomed = runners.spawn(manager, req("doomed"))
        await until(lambda: runners.running("doomed") is not None)
        runners.made[-1].crash()
        with pytest.raises(RunnerCrashed):
            await doomed
        await collect(manager, req("next"))  # a fresh runner serves it
        assert view.runner_restarts() == {"m:latest": 1}
