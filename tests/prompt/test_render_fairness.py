"""One person cannot take the render pool from everybody (review of issue 11, item 1/2).

The pool has two worker threads for all callers. Without per-person turns, one student
sending templates that run to their budget held both workers and everybody else's chat
waited for them (then 503)."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from flexi.store.gguf_meta import GGUFInfo
from flexi.store.names import parse_model_name
from flexi.store.store import ModelRecord
from flexi.prompt.rendering import REQUEST_TEMPLATE_STEPS, render_generate
from flexi.prompt.render_pool import render_off_loop, render_turn
from flexi.engine.types import BadRequest, TooManyRequests


def _blocking_render(started: threading.Event, release: threading.Event, name: str) -> str:
    started.set()
    release.wait(10)
    return name


async def _render_as(holder: str, limit: int | None, started: threading.Event, release: threading.Event,
                     name: str) -> str:
    async with render_turn(holder, limit):
        return await render_off_loop(_blocking_render, started, release, name)


def test_a_person_flooding_the_render_pool_leaves_a_worker_for_others() -> None:
    async def scenario() -> None:
        release = threading.Event()
        a1, a2, b1 = threading.Event(), threading.Event(), threading.Event()
        attacker = [asyncio.create_task(_render_as("user:1", 4, ev, release, f"a{i}")) for i, ev in enumerate((a1, a2))]
        await asyncio.to_thread(a1.wait, 5)
        victim = asyncio.create_task(_render_as("user:2", 4, b1, release, "b"))
        # the victim's render starts while the attacker's first still holds its worker: the attacker's
        # second render waits in the attacker's own line instead of taking the other worker
        assert await asyncio.to_thread(b1.wait, 5), "another person's render did not get a worker"
        assert not a2.is_set()
        release.set()
        assert await victim == "b"
        assert sorted(await asyncio.gather(*attacker)) == ["a0", "a1"]

    asyncio.run(scenario())


def test_renders_beyond_a_persons_cap_are_429() -> None:
    async def scenario() -> None:
        release = threading.Event()
        started = [threading.Event() for _ in range(3)]
        held = [asyncio.create_task(_render_as("user:1", 2, started[i], release, str(i))) for i in range(2)]
        await asyncio.to_thread(started[0].wait, 5)
        with pytest.raises(TooManyRequests):
            async with render_turn("user:1", 2):
                pass
        async with render_turn("user:2", 2):  # others are not affected
            pass
        release.set()
        await asyncio.gather(*held)
        async with render_turn("user:1", 2):  # the line is free again once they finish
            pass

    asyncio.run(scenario())


def test_a_request_template_gets_a_tenth_of_the_render_budget() -> None:
    """200,000 empty range steps are within a model template's budget (1,000,000) but not a request's."""
    default_record = ModelRecord(name="m:latest", model_name=parse_model_name("m:latest"), digest="ab" * 32, size=1,
                                 modified_at=datetime.now(timezone.utc), model_path=Path("/nonexistent"),
                                 info=GGUFInfo(architecture="llama"))
    assert REQUEST_TEMPLATE_STEPS == 100_000
    with pytest.raises(BadRequest, match="step budget|too much work|longer than"):
        render_generate(default_record, "hi", template="{{ range 200000 }}{{ end }}{{ .Prompt }}")
    assert render_generate(default_record, "hi", template="{{ range 50 }}{{ end }}{{ .Prompt }}") == "hi"
