"""Fair admission: bounded, priorities, round-robin across users."""

from __future__ import annotations

import asyncio

import pytest

from flexi.engine.types import ServerBusy
from flexi.scheduler.fair_queue import FairQueue


async def test_free_slots_are_granted_at_once() -> None:
    q = FairQueue(capacity=2, max_waiting=10)
    a, b = q.enter("u1"), q.enter("u2")
    assert a.granted and b.granted and q.in_use == 2
    c = q.enter("u3")
    assert not c.granted and q.waiting == 1
    q.leave(a)
    assert c.granted and q.in_use == 2


async def test_round_robin_across_users() -> None:
    q = FairQueue(capacity=1, max_waiting=100)
    running = q.enter("script")
    script = [q.enter("script") for _ in range(30)]
    student = q.enter("student")
    assert q.position(student) == 2  # right after the script's first waiting request
    order = []
    current = running
    for _ in range(31):
        q.leave(current)
        current = next(t for t in [*script, student] if t.granted and not t.left)
        order.append("student" if current is student else "script")
    assert order.index("student") == 1


async def test_priority_classes_first() -> None:
    q = FairQueue(capacity=1, max_waiting=100)
    holder = q.enter("a")
    batch = q.enter("b", priority=1)
    chat = q.enter("c", priority=0)
    assert q.position(chat) == 1 and q.position(batch) == 2
    q.leave(holder)
    assert chat.granted and not batch.granted


async def test_full_queue_is_503() -> None:
    q = FairQueue(capacity=1, max_waiting=2, retry_after=3)
    q.enter("a")
    q.enter("a")
    q.enter("b")
    with pytest.raises(ServerBusy) as err:
        q.enter("c")
    assert err.value.status == 503 and err.value.retry_after == 3


async def test_leaving_the_queue_frees_the_place() -> None:
    q = FairQueue(capacity=1, max_waiting=1)
    holder = q.enter("a")
    waiter = q.enter("b")
    q.leave(waiter)
    assert q.waiting == 0
    q.leave(waiter)  # idempotent
    later = q.enter("c")
    q.leave(holder)
    assert later.granted and q.in_use == 1


async def test_wait_times_out_and_then_succeeds() -> None:
    q = FairQueue(capacity=1, max_waiting=5)
    holder = q.enter("a")
    waiter = q.enter("b")
    assert await waiter.wait(0.01) is False
    asyncio.get_running_loop().call_later(0.02, q.leave, holder)
    assert await waiter.wait(1.0) is True


async def test_capacity_growth_dispatches() -> None:
    q = FairQueue(capacity=1, max_waiting=5)
    q.enter("a")
    w = q.enter("b")
    q.set_capacity(2)
    assert w.granted
