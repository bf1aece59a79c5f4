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
    EngineError,
    GenerationStats,
    Prefill,
    RequestTimeout,
    RunnerCrashed,
    ServerBusy,
    StatusEvent,
    TextChunk,
    TooManyRequests,
)
from flexi.scheduler import manager as manager_mod
from flexi.scheduler.memory import estimate_runner_bytes
from tests.scheduler.fakes import (
    CHUNKS,
    FILE_SIZE,
    INFO,
    collect as _collect,
    fake_manager as _manager,
    req as _req,
    until as _until,
)


async def test_generate_streams_the_runners_chunks_and_stats(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        req = _req("hi", max_tokens=5)
        items = await _collect(manager, req)
    assert [i.text for i in items if isinstance(i, TextChunk)] == CHUNKS
    stats = items[-1]
    assert isinstance(stats, GenerationStats)
    assert (stats.finish_reason, stats.prompt_tokens, stats.completion_tokens) == ("stop", 3, 2)
    assert [i.prompt_tokens for i in items if isinstance(i, Prefill)] == [3]  # what billing counts (the gate takes it)
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


# --- fair queue --------------------------------------------------------------------------------------
async def test_waiting_requests_are_served_user_by_user_and_interactive_before_batch(tmp_path: Path) -> None:
    async with _manager(tmp_path, num_parallel=1) as (manager, runners):
        runners.hold("a1")
        first = runners.spawn(manager, _req("a1", user="alice"))
        await _until(lambda: runners.running("a1") is not None)
        queue = manager.queues["m:latest"]
        waiting = []
        for prompt, user, priority in [("a2", "alice", 0), ("a3", "alice", 0), ("batch", "carol", 1), ("b1", "bob", 0)]:
            waiting.append(runners.spawn(manager, _req(prompt, user=user, priority=priority)))
            await _until(lambda n=len(waiting): queue.waiting == n)
        runners.release("a1")
        await asyncio.gather(first, *waiting)
    # alice queued twice before bob came, but bob is served after her first; the batch job goes last
    assert runners.order == ["a1", "a2", "b1", "a3", "batch"]


async def test_waiting_clients_are_told_their_place_and_that_the_model_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "STATUS_AFTER", 0.01)
    async with _manager(tmp_path, num_parallel=1) as (manager, runners):
        runners.start_delay = 0.1
        runners.hold("first")
        first = runners.spawn(manager, _req("first", user="a"))
        second = runners.spawn(manager, _req("second", user="b"))
        await _until(lambda: runners.running("first") is not None)
        runners.release("first")
        items, later = await asyncio.gather(first, second)
    assert items[0] == StatusEvent("loading") and isinstance(items[-1], GenerationStats)
    assert StatusEvent("queued", 1) in later and isinstance(later[-1], GenerationStats)


# --- memory budget and eviction ---------------------------------------------------------------------
async def test_eviction_unloads_the_idle_model_that_would_expire_soonest(tmp_path: Path) -> None:
    one = estimate_runner_bytes(FILE_SIZE, INFO, 2048, 2)
    async with _manager(tmp_path, "a:latest", "b:latest", "c:latest", max_memory=one * 5 // 2) as (manager, runners):
        await _collect(manager, _req("x", model="a:latest", keep_alive=600))
        await _collect(manager, _req("y", model="b:latest", keep_alive=60))
        await _collect(manager, _req("z", model="c:latest"))
        assert sorted(manager.loaded) == ["a:latest", "c:latest"]  # b was loaded later but expires first
        assert [r.stopped for r in runners.made] == [False, True, False]


async def test_max_loaded_models_evicts_even_when_memory_would_fit(tmp_path: Path) -> None:
    async with _manager(tmp_path, "a:latest", "b:latest", max_loaded_models=1) as (manager, runners):
        await _collect(manager, _req("x", model="a:latest"))
        await _collect(manager, _req("y", model="b:latest"))
        assert list(manager.loaded) == ["b:latest"] and runners.made[0].stopped


async def test_a_busy_model_is_never_evicted_the_new_load_waits_for_it(tmp_path: Path) -> None:
    one = estimate_runner_bytes(FILE_SIZE, INFO, 2048, 2)
    async with _manager(tmp_path, "a:latest", "b:latest", max_memory=one * 3 // 2) as (manager, runners):
        runners.hold("busy")
        busy = runners.spawn(manager, _req("busy", model="a:latest"))
        await _until(lambda: runners.running("busy") is not None)
        other = runners.spawn(manager, _req("other", model="b:latest"))
        await asyncio.sleep(0.05)
        assert len(runners.made) == 1 and not runners.made[0].stopped  # b waits for room; a keeps generating
        runners.release("busy")
        assert isinstance((await busy)[-1], GenerationStats)
        assert isinstance((await other)[-1], GenerationStats)  # as soon as a went idle it was evicted for b
        assert list(manager.loaded) == ["b:latest"] and runners.made[0].stopped


async def test_a_model_larger_than_the_budget_is_refused_without_evicting_anything(tmp_path: Path) -> None:
    one = estimate_runner_bytes(FILE_SIZE, INFO, 2048, 2)
    async with _manager(tmp_path, max_memory=one // 2) as (manager, runners):
        with pytest.raises(EngineError) as caught:
            await _collect(manager, _req("x"))
        assert caught.value.code == "insufficient_memory" and "FLEXI_MAX_MEMORY" in caught.value.message
        assert runners.made == []


# --- keep-alive and unload -----------------------------------------------------------------------------
async def test_keep_alive_zero_unloads_as_soon_as_the_request_ends(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        await _collect(manager, _req("x", keep_alive=0))
        assert manager.loaded == {} and runners.made[0].stopped


async def test_unload_while_busy_waits_for_the_last_request(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        runners.hold("x")
        task = runners.spawn(manager, _req("x"))
        await _until(lambda: runners.running("x") is not None)
        assert await manager.unload("m:latest") is True
        assert not runners.made[0].stopped  # the request in flight finishes first
        runners.release("x")
        assert isinstance((await task)[-1], GenerationStats)
        assert manager.loaded == {} and runners.made[0].stopped
        assert await manager.unload("m:latest") is False  # nothing loaded any more


# --- crashes ----------------------------------------------------------------------------------------------
async def test_an_idle_runner_that_died_is_reaped_and_restarted_on_the_next_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "REAP_EVERY", 0.01)
    async with _manager(tmp_path) as (manager, runners):
        await _collect(manager, _req("x"))
        runners.made[0].crash()
        await _until(lambda: manager.loaded == {} and runners.made[0].stopped)  # reaped: its memory is back
        assert manager.ps() == []
        items = await _collect(manager, _req("y"))
        assert isinstance(items[-1], GenerationStats) and len(runners.made) == 2 and runners.made[1].alive


async def test_a_failing_start_is_reported_and_the_next_request_tries_again(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        runners.start_error = EngineError("the model could not be loaded: bad magic", 500, "load_failed")
        with pytest.raises(EngineError, match="bad magic"):
            await _collect(manager, _req("x"))
        runners.start_error = None
        assert manager.loaded == {} and runners.made[0].stopped  # a half-started runner is not left behind
        assert manager.queues["m:latest"].in_use == 0
        assert isinstance((await _collect(manager, _req("y")))[-1], GenerationStats)


# --- replicas ----------------------------------------------------------------------------------------------
async def test_a_dead_replica_is_skipped_while_the_other_serves_then_both_restart(tmp_path: Path) -> None:
    async with _manager(tmp_path, num_parallel=2, num_replicas=2) as (manager, runners):
        runners.hold("r1", "r2")
        r1 = runners.spawn(manager, _req("r1", user="a"))
        await _until(lambda: runners.running("r1") is not None)
        serving = runners.running("r1")
        [other] = [r for r in runners.made if r is not serving]
        other.crash()
        r2 = runners.spawn(manager, _req("r2", user="b"))
        await _until(lambda: runners.running("r2") is not None)
        assert runners.running("r2") is serving and len(runners.made) == 2  # no restart under load
        runners.release("r1")
        runners.release("r2")
        await asyncio.gather(r1, r2)
        assert manager.loaded == {} and all(r.stopped for r in runners.made)  # idle and partly dead: unloaded
        await _collect(manager, _req("r3"))
        assert len(runners.live()) == 2


# --- timeouts ----------------------------------------------------------------------------------------------
async def test_request_timeout_covers_generation_and_waiting(tmp_path: Path) -> None:
    async with _manager(tmp_path, num_parallel=1, request_timeout=0.1) as (manager, runners):
        runners.hold("slow", "behind")
        slow = runners.spawn(manager, _req("slow", user="a"))
        behind = runners.spawn(manager, _req("behind", user="b"))
        results = await asyncio.wait_for(asyncio.gather(slow, behind, return_exceptions=True), 2)
        assert all(isinstance(r, RequestTimeout) and r.status == 504 for r in results), results
        queue = manager.queues["m:latest"]
        assert (queue.in_use, queue.waiting) == (0, 0)
        assert runners.made[0].alive and runners.made[0].in_flight == []  # a timeout does not cost the runner
        runners.release("slow")
        assert isinstance((await _collect(manager, _req("slow")))[-1], GenerationStats)


# --- embeddings --------------------------------------------------------------------------------------------
async def test_embeddings_go_through_the_same_queue_and_runner(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        result = await manager.embed(EmbeddingRequest(model="m:latest", inputs=["a", "b"], normalize=False))
        assert result.embeddings == [[1.0, 0.0], [1.0, 0.0]] and result.prompt_tokens == 2
        [sent] = runners.made[0].requests
        assert sent == Embed(inputs=["a", "b"], truncate=True, normalize=False)
        assert manager.queues["m:latest"].in_use == 0


# --- shutdown ----------------------------------------------------------------------------------------------
async def test_shutdown_ends_running_and_waiting_requests_and_starts_nothing_new(tmp_path: Path) -> None:
    async with _manager(tmp_path, num_parallel=1) as (manager, runners):
        runners.hold("running", "waiting")
        running = runners.spawn(manager, _req("running", user="a"))
        await _until(lambda: runners.running("running") is not None)
        waiting = runners.spawn(manager, _req("waiting", user="b"))
        await _until(lambda: manager.queues["m:latest"].waiting == 1)
        await asyncio.wait_for(manager.shutdown(), 2)
        done, pending = await asyncio.wait({running, waiting}, timeout=2)
        assert not pending  # before the fix the waiting one was admitted to a fresh runner and hung there
        with pytest.raises(RunnerCrashed):
            running.result()
        with pytest.raises(ServerBusy, match="shutting down"):
            waiting.result()
        assert len(runners.made) == 1 and runners.made[0].stopped and manager.loaded == {}
        with pytest.raises(ServerBusy):
            await _collect(manager, _req("late"))
        assert len(runners.made) == 1


async def test_shutdown_during_a_load_stops_the_runner_being_started(tmp_path: Path) -> None:
    async with _manager(tmp_path) as (manager, runners):
        runners.start_delay = 0.1
        task = runners.spawn(manager, _req("x"))
        await _until(lambda: len(runners.made) == 1)
        await manager.shutdown()
        with pytest.raises(ServerBusy):
            await asyncio.wait_for(task, 2)
        assert runners.made[0].stopped and manager.loaded == {}
