"""The real `ModelManager` driven through its runner seam by an in-process fake runner (tests/scheduler/fakes.py).

No processes, no model: fair queue, eviction, keep-alive, crash-restart, replicas, timeouts and shutdown
in milliseconds. The real runner keeps its end-to-end tests (tests/e2e/test_lifecycle.py, test_scheduling.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flexi.engine.runner.protocol import Embed, Generate
from flexi.engine.types import (
    EmbeddingRequest,
    GenerationStats,
    RequestTimeout,
    RunnerCrashed,
    StatusEvent,
    TextChunk,
    TooManyRequests,
)
from flexi.scheduler import manager as manager_mod
from flexi.scheduler.memory import estimate_runner_bytes
from tests.scheduler.fakes import CHUNKS, FILE_SIZE, INFO, collect as _collect, fake_manager as _manager, req as _req, until as _until


async def test_generate_streams_the_runners_chunks_and_stats(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        req = _req("hi", max_tokens=5)
        items = await _collect(manager, req)
    assert [i.text for i in items if isinstance(i, TextChunk)] == CHUNKS
    stats = items[-1]
    assert isinstance(stats, GenerationStats)
    assert (stats.finish_reason, stats.prompt_tokens, stats.completion_tokens) == ("stop", 3, 2)
    assert req.prompt_tokens_admitted == 3  # the prefill event is what billing counts
    [runner] = runners.made
    [sent] = runner.requests
    assert isinstance(sent, Generate) and sent.max_tokens == 5 and sent.prompt == "hi"
    assert (runner.spec.num_ctx, runner.spec.num_parallel) == (2048, 2)


async def test_fair_queue_admits_slots_times_replicas_and_the_rest_wait(tmp_path: Path) -> None:
    async with _manager(tmp_path, num_parallel=2, num_replicas=2) as (manager, runners):
        prompts = [f"p{i}" for i in range(5)]
        runners.hold(*prompts)
        tasks = [runners.spawn(manager, _req(p, user=f"u{i}")) for i, p in enumerate(prompts)]
        await _until(lambda: sum(len(r.in_flight) for r in runners.made) == 4)
        queue = manager.queues["m:latest"]
        assert (queue.capacity, queue.in_use, queue.waiting) == (4, 4, 1)
        assert runners.running("p4") is None  # the fifth waits in the fair queue, not inside a runner
        assert sorted(len(r.in_flight) for r in runners.made) == [2, 2]
        for p in prompts:
            runners.release(p)
        results = await asyncio.gather(*tasks)
    assert all(isinstance(r[-1], GenerationStats) for r in results)


async def test_per_person_cap_gives_too_many_requests(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        runners.hold("first")
        first = runners.spawn(manager, _req("first", user="bob", max_concurrent=1))
        await _until(lambda: runners.running("first") is not None)
        with pytest.raises(TooManyRequests):
            await _collect(manager, _req("second", user="bob", max_concurrent=1))
        other = await _collect(manager, _req("alice's", user="alice", max_concurrent=1))  # only bob is capped
        assert isinstance(other[-1], GenerationStats)
        runners.release("first")
        await first


async def test_loading_a_second_model_evicts_the_idle_first(tmp_path: Path) -> None:
    one = estimate_runner_bytes(FILE_SIZE, INFO, 2048, 2)
    async with _manager(tmp_path, "a:latest", "b:latest", max_memory=one * 3 // 2) as (manager, runners):
        await _collect(manager, _req("x", model="a:latest"))
        assert list(manager.loaded) == ["a:latest"]
        await _collect(manager, _req("y", model="b:latest"))
        assert list(manager.loaded) == ["b:latest"]
        first, second = runners.made
        assert first.stopped and not second.stopped


async def test_keep_alive_expiry_unloads_the_idle_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "REAP_EVERY", 0.01)
    async with _manager(tmp_path) as (manager, runners):
        await _collect(manager, _req("x", keep_alive=0.05))
        assert "m:latest" in manager.loaded  # idle, but within its keep_alive
        await _until(lambda: runners.made[0].stopped)  # the reaper ended the runner: its memory is back
        assert "m:latest" not in manager.loaded


async def test_runner_dying_mid_request_fails_it_and_the_next_gets_a_fresh_runner(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        runners.hold("doomed")
        doomed = runners.spawn(manager, _req("doomed"))
        await _until(lambda: runners.running("doomed") is not None)
        runners.made[0].crash()
        with pytest.raises(RunnerCrashed):
            await doomed
        items = await _collect(manager, _req("next"))
        assert isinstance(items[-1], GenerationStats)
        assert len(runners.made) == 2 and runners.made[1].alive and runners.made[0].stopped


async def test_replicas_serve_the_least_loaded_first(tmp_path: Path) -> None:
    async with _manager(tmp_path, num_parallel=2, num_replicas=2) as (manager, runners):
        runners.hold("r1", "r2", "r3")
        tasks = {}
        for p in ("r1", "r2"):
            tasks[p] = runners.spawn(manager, _req(p, user=p))
            await _until(lambda p=p: runners.running(p) is not None)
        assert len(runners.made) == 2
        assert runners.running("r1") is not runners.running("r2")  # one each, not both on the first
        busy = runners.running("r2")
        runners.release("r1")
        await tasks.pop("r1")
        tasks["r3"] = runners.spawn(manager, _req("r3", user="r3"))
        await _until(lambda: runners.running("r3") is not None)
        assert runners.running("r3") is not busy  # the idle replica, not the one still generating r2
        for p in ("r2", "r3"):
            runners.release(p)
        await asyncio.gather(*tasks.values())
