"""Serving many users at once: no cross-talk, cancellation, queue limits, fairness, replicas, timeouts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import MODEL, RunningServer, start_server, stop_server
from tests.server.test_guards_and_faults import _runner_pids

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("sched") / "home",
                       {"FLEXI_NUM_PARALLEL": "2", "FLEXI_MAX_QUEUE": "3", "FLEXI_KEEP_ALIVE": "2s"})
    yield srv
    stop_server(srv)


def _long(n: int = 400) -> dict:
    return {"model": MODEL, "prompt": "Tell a long story.", "options": {"num_predict": n, "ignore_eos": True, "temperature": 0}}


async def _stream(client: httpx.AsyncClient, body: dict, headers: dict | None = None) -> list[dict]:
    lines = []
    async with client.stream("POST", "/api/generate", json=body, headers=headers or {}) as r:
        if r.status_code != 200:
            await r.aread()
            return [{"http_status": r.status_code, **r.json(), "retry_after": r.headers.get("retry-after")}]
        async for line in r.aiter_lines():
            if line:
                lines.append(json.loads(line))
    return lines


def test_no_cross_talk_under_8_concurrent_streams(server: RunningServer) -> None:
    """Each request is constrained to echo its own id; any mix-up between sequences shows."""
    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, dict]:
        schema = {"type": "object", "properties": {"id": {"type": "string", "enum": [f"request-{i}-{i * 7919}"]},
                                                   "n": {"type": "integer", "enum": [i]}}, "required": ["id", "n"]}
        r = await client.post("/api/generate", json={"model": MODEL, "prompt": f"Give the id of request {i}.",
                                                     "format": schema, "stream": False,
                                                     "options": {"temperature": 0.9, "seed": i, "num_predict": 60}})
        return i, r.json()

    async def main() -> list[tuple[int, dict]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await asyncio.gather(*(one(client, i) for i in range(8)))

    for i, body in asyncio.run(main()):
        assert json.loads(body["response"]) == {"id": f"request-{i}-{i * 7919}", "n": i}


def test_cancelling_one_stream_leaves_the_others(sched: RunningServer) -> None:
    async def main() -> tuple[list[list[dict]], int]:
        async with httpx.AsyncClient(base_url=sched.url, timeout=120) as client:
            keep = asyncio.create_task(_stream(client, _long(60)))

            async def cancelled() -> int:
                seen = 0
                async with client.stream("POST", "/api/generate", json=_long(2000)) as r:
                    async for line in r.aiter_lines():
                        seen += bool(line)
                        if seen >= 5:
                            break
                return seen

            seen = await cancelled()
            # the freed slot is usable at once by a new request
            after = await _stream(client, _long(20))
            return [await keep, after], seen

    (kept, after), _ = asyncio.run(main())
    assert kept[-1]["done"] and kept[-1]["eval_count"] == 60
    assert after[-1]["done"] and after[-1]["eval_count"] == 20


async def _stream_signalled(client: httpx.AsyncClient, body: dict, inside: asyncio.Event,
                            finished: list[int] | None = None) -> list[dict]:
    """Like _stream, and set `inside` once the server took the request: its first line arrived
    (a token when it has a slot, a "queued" status once it waits; both only from an admitted request)."""
    lines = []
    async with client.stream("POST", "/api/generate", json=body) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if line:
                lines.append(json.loads(line))
                inside.set()
    if finished is not None:
        finished.append(1)
    return lines


def test_queue_overflow_is_a_fast_503_and_loses_no_accepted_request(sched: RunningServer) -> None:
    """2 slots and a queue of 3 are full: the next request is refused at once, i.e. before any
    accepted request finished (not after waiting for room), and every accepted one completes."""
    httpx.post(sched.url + "/api/generate", json={"model": MODEL}, timeout=60)  # loaded, so the test measures queueing

    async def main() -> tuple[list[list[dict]], int]:
        async with httpx.AsyncClient(base_url=sched.url, timeout=120) as client:
            inside = [asyncio.Event() for _ in range(5)]
            finished: list[int] = []
            accepted = [asyncio.create_task(_stream_signalled(client, _long(100), ev, finished)) for ev in inside]
            await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in inside)), 60)  # 2 running + 3 queued
            rejected = await _stream(client, _long(100))
            finished_before = len(finished)
            return [rejected, *(await asyncio.gather(*accepted))], finished_before

    (rejected, *accepted), finished_before = asyncio.run(main())
    assert rejected[0]["http_status"] == 503 and rejected[0]["error"] == "server busy, try again"
    assert rejected[0]["retry_after"] and int(rejected[0]["retry_after"]) >= 1
    assert finished_before == 0  # refused at once, not after a slot or queue place came free
    for lines in accepted:
        assert lines[-1]["done"] and lines[-1]["eval_count"] == 100


def test_queued_streams_are_told_their_position(sched: RunningServer) -> None:
    async def main() -> list[dict]:
        async with httpx.AsyncClient(base_url=sched.url, timeout=120) as client:
            running = [asyncio.Event() for _ in range(2)]
            busy = [asyncio.create_task(_stream_signalled(client, _long(150), ev)) for ev in running]
            await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in running)), 60)  # both slots taken
            waiting = await _stream(client, _long(5))
            await asyncio.gather(*busy)
            return waiting

    lines = asyncio.run(main())
    statuses = [line for line in lines if line.get("status") == "queued"]
    assert statuses and statuses[0]["queue_position"] == 1 and statuses[0]["response"] == ""
    assert lines[-1]["done"] and lines[-1]["eval_count"] == 5


def test_fairness_one_script_cannot_starve_a_student(sched: RunningServer) -> None:
    """A script sends 8 requests at once, then a student sends one: the student is served next, not ninth."""
    async def main() -> tuple[list[float], float]:
        async with httpx.AsyncClient(base_url=sched.url, timeout=300) as client:
            script_headers = {"Authorization": "Bearer script-key"}
            done_at: list[float] = []

            async def script_one() -> None:
                await _stream(client, _long(30), script_headers)
                done_at.append(time.monotonic())

            tasks = [asyncio.create_task(script_one()) for _ in range(5)]
            await asyncio.sleep(0.3)
            await _stream(client, _long(30), {"Authorization": "Bearer student-key"})
            student_done = time.monotonic()
            await asyncio.gather(*tasks)
            return done_at, student_done

    # capacity 2 and max queue 3: the script holds both slots and fills the queue … so use 5 script requests
    script_done, student_done = asyncio.run(main())
    finished_before_student = sum(t < student_done for t in script_done)
    assert finished_before_student <= 3, (finished_before_student, "the student waited behind the whole script")


def test_burst_then_idle_returns_memory(sched: RunningServer) -> None:
    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=sched.url, timeout=300) as client:
            async def one(i: int) -> int:
                for _ in range(100):
                    r = await client.post("/api/generate", json={"model": MODEL, "prompt": f"Hi {i}", "stream": False,
                                                                 "options": {"num_predict": 2}})
                    if r.status_code != 503:
                        return r.status_code
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")) / 4)
                return 503
            return await asyncio.gather(*(one(i) for i in range(30)))

    codes = asyncio.run(main())
    assert codes == [200] * 30
    assert _runner_pids(sched)
    deadline = time.monotonic() + 15
    while _runner_pids(sched) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _runner_pids(sched) == []  # keep_alive 2s passed: the runner ended and its memory is back


def test_replicas_and_request_timeout(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_server(tmp_path_factory.mktemp("replicas") / "home",
                       {"FLEXI_NUM_REPLICAS": "2", "FLEXI_NUM_PARALLEL": "1", "FLEXI_REQUEST_TIMEOUT": "8"})
    try:
        assert httpx.post(srv.url + "/api/generate", json={"model": MODEL}, timeout=60).status_code == 200
        async def main() -> list[dict]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
                return [r.json() for r in await asyncio.gather(*(
                    client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                       "options": {"num_predict": 30, "ignore_eos": True}})
                    for _ in range(2)))]

        both = asyncio.run(main())
        assert all(b["eval_count"] == 30 for b in both)
        assert len(_runner_pids(srv)) == 2
        assert httpx.get(srv.url + "/api/ps").json()["models"][0]["name"] == MODEL
        slow = httpx.post(srv.url + "/api/generate", json={"model": MODEL, "prompt": "Story", "stream": False,
                                                           "options": {"num_predict": 5000, "ignore_eos": True}}, timeout=60)
        assert slow.status_code == 504 and "FLEXI_REQUEST_TIMEOUT" in slow.json()["error"]
    finally:
        stop_server(srv)
