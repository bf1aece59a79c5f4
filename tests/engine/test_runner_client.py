"""`RunnerProcess` against a scripted peer on a socket pair: what no real runner can be made to do.

(The real process: tests/engine/test_runner_process.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flexi.engine.runner.protocol import Done, Generate, Prefill, Sampling, Text, encode
from flexi.engine.runner_client import RunnerProcess, RunnerSpec
from flexi.engine.types import RunnerCrashed

GREEDY = Sampling(temperature=0.0, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, repeat_last_n=64,
                  presence_penalty=0.0, frequency_penalty=0.0, seed=None)


class _Process:
    """Stands in for the runner's `asyncio.subprocess.Process`: the peer is this test."""

    pid = 4242
    returncode: int | None = None

    def kill(self) -> None:
        self.returncode = -9

    terminate = kill

    async def wait(self) -> int | None:
        return self.returncode


@contextlib.asynccontextmanager
async def _peer(tmp_path: Path) -> AsyncIterator[tuple[RunnerProcess, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A RunnerProcess attached to one end of a socket pair; the test plays the runner on the other."""
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    client = RunnerProcess(RunnerSpec(model_path=tmp_path / "none.gguf", num_ctx=16, num_parallel=1, num_threads=1),
                           tmp_path / "unused.sock")
    client.proc = _Process()  # type: ignore[assignment]
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    client._attach(reader, writer)
    peer_reader, peer_writer = await asyncio.open_unix_connection(sock=theirs)
    try:
        yield client, peer_reader, peer_writer
    finally:
        peer_writer.close()
        await client.stop()


async def _sent(peer: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(peer.readline(), 5)


async def test_events_are_routed_to_their_request_by_id(tmp_path: Path) -> None:
    async with _peer(tmp_path) as (client, peer_reader, peer_writer):
        one = asyncio.ensure_future(_all(client.stream(Generate(prompt="one", sampling=GREEDY), timeout=5)))
        assert (await _sent(peer_reader)).startswith(b'[1,{"op":"generate","prompt":"one"')
        two = asyncio.ensure_future(_all(client.stream(Generate(prompt="two", sampling=GREEDY), timeout=5)))
        assert (await _sent(peer_reader)).startswith(b'[2,{"op":"generate","prompt":"two"')
        done = Done(finish_reason="stop", prompt_tokens=1, completion_tokens=1, prompt_eval_ns=1, eval_ns=1)
        peer_writer.write(encode(2, Text("zwei", 1)) + encode(1, Text("eins", 1)) + encode(2, done) + encode(1, done))
        assert await asyncio.wait_for(one, 5) == [Text("eins", 1), done]
        assert await asyncio.wait_for(two, 5) == [Text("zwei", 1), done]


async def _all(stream: AsyncIterator[object]) -> list[object]:
    return [e async for e in stream]


async def test_a_malformed_event_fails_the_request_with_a_clear_error(tmp_path: Path) -> None:
    async with _peer(tmp_path) as (client, peer_reader, peer_writer):
        assert client.alive
        stream = client.stream(Generate(prompt="hi", sampling=GREEDY), timeout=5)
        first = asyncio.ensure_future(anext(stream))
        await _sent(peer_reader)
        peer_writer.write(encode(1, Prefill(prompt_tokens=2)) + b'[1,{"ev":"text","n":1}]\n')
        assert await asyncio.wait_for(first, 5) == Prefill(prompt_tokens=2)
        with pytest.raises(RunnerCrashed) as caught:
            await asyncio.wait_for(anext(stream), 5)
        assert not client.alive  # a runner that breaks the protocol gets no more requests
        assert client.proc.returncode == -9  # type: ignore[union-attr]  # and is killed: its memory returns
    assert "could not read" in caught.value.message and "missing required field `text`" in caught.value.message
    assert (caught.value.status, caught.value.code) == (500, "runner_crashed")


async def test_timeout_ends_the_stream_and_cancels_the_request(tmp_path: Path) -> None:
    async with _peer(tmp_path) as (client, peer_reader, _):
        with pytest.raises(TimeoutError):
            await _all(client.stream(Generate(prompt="slow", sampling=GREEDY), timeout=0.05))
        await _sent(peer_reader)
        assert await _sent(peer_reader) == b'[1,{"op":"cancel"}]\n'  # the runner frees the slot
        assert client.in_flight == 0
