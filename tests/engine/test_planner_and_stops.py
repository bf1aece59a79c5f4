"""The runner's pure parts: batch planning and stop-string matching (no model needed)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from flexi.engine.runner.planner import SCATTER_WORTH, SeqDemand, pick_slot, plan
from flexi.engine.runner.sequence import Slot
from flexi.engine.runner.stops import StopMatcher


HEAD = list(range(1000, 1020))  # a short shared head, like the default system prompt


def _slots(n: int, busy: set[int] = set(), cached: dict[int, list[int]] | None = None) -> list[Slot]:
    return [Slot(seq_id=i, cached=list((cached or {}).get(i, [])), busy=i in busy) for i in range(n)]


def test_an_idle_server_keeps_long_caches() -> None:
    slots = _slots(4, cached={0: HEAD + list(range(300)), 1: HEAD + [7, 8]})
    assert pick_slot(slots, [5, 6]).seq_id == 2  # nothing shared: an empty slot, slot 0's cache survives
    assert pick_slot(slots, HEAD + [5, 6]).seq_id == 1  # the head is shared by 0 and 1: the shorter cache goes


def test_a_new_sequence_joins_the_busy_block_instead_of_scattering() -> None:
    """After a burst every slot holds a cache: newcomers pack next to the busy slots."""
    cached = {i: HEAD + [i] * 100 for i in range(16)}
    slots = _slots(16, busy={9, 10}, cached=cached)
    assert pick_slot(slots, HEAD + [42]).seq_id in (8, 11)
    slots = _slots(16, busy={3, 5}, cached=cached)
    assert pick_slot(slots, HEAD + [42]).seq_id == 4  # filling a gap merges two runs


def test_a_short_shared_prefix_does_not_scatter_the_batch() -> None:
    cached = {i: HEAD + [i] * 100 for i in range(16)}
    cached[14] = HEAD + [99] * 100  # shares 100 more tokens than the neighbours: not worth a split
    slots = _slots(16, busy={0, 1}, cached=cached)
    assert pick_slot(slots, HEAD + [99] * 110).seq_id == 2


def test_a_long_shared_prefix_is_reused_wherever_it_is() -> None:
    instructions = list(range(5000, 5000 + SCATTER_WORTH + 200))  # a course assistant's instructions
    cached = {i: HEAD + [i] * 100 for i in range(16)}
    cached[12] = instructions + [1, 2, 3]
    slots = _slots(16, busy={0, 1}, cached=cached)
    assert pick_slot(slots, instructions + [9, 9]).seq_id == 12


def test_equal_packing_prefers_the_slot_with_the_shared_prefix() -> None:
    slots = _slots(4, cached={2: HEAD + [5, 6, 7]})
    assert pick_slot(slots, HEAD + [5, 6, 8]).seq_id == 2  # nothing busy: the hit costs no split


def test_decoding_sequences_get_one_token_each_first() -> None:
    demands = [SeqDemand(0, 1, True), SeqDemand(1, 1, True), SeqDemand(2, 900, False)]
    out = plan(demands, n_batch=512, prefill_chunk=128)
    assert out[0] == 1 and out[1] == 1
    assert out[2] == 128  # a long prompt is chunked while others decode


def test_prefill_uses_whole_batch_when_nobody_decodes() -> None:
    out = plan([SeqDemand(0, 2000, False)], n_batch=512, prefill_chunk=128)
    assert out == {0: 512}


def test_prefill_shared_fairly() -> None:
    out = plan([SeqDemand(0, 1000, False), SeqDemand(1, 1000, False)], n_batch=512, prefill_chunk=128)
    assert out == {0: 256, 1: 256}
    out = plan([SeqDemand(0, 10, False), SeqDemand(1, 1000, False)], n_batch=512, prefill_chunk=128)
    assert out == {0: 10, 1: 502}


def test_batch_budget_never_exceeded_with_many_decoders() -> None:
    demands = [SeqDemand(i, 1, True) for i in range(600)]
    out = plan(demands, n_batch=512, prefill_chunk=128)
    assert sum(out.values()) == 512


@given(st.lists(st.tuples(st.integers(1, 3000), st.booleans()), max_size=40), st.integers(1, 1024), st.integers(1, 512))
def test_plan_invariants(items: list[tuple[int, bool]], n_batch: int, chunk: int) -> None:
    demands = [SeqDemand(i, 1 if dec else pending, dec) for i, (pending, dec) in enumerate(items)]
    out = plan(demands, n_batch, chunk)
    assert sum(out.values()) <= n_batch
    for d in demands:
        assert 0 <= out.get(d.seq_id, 0) <= d.pending
    decoders = [d for d in demands if d.decoding]
    if len(decoders) <= n_batch:
        assert all(out.get(d.seq_id) == 1 for d in decoders)
    if decoders:
        assert sum(out.get(d.seq_id, 0) for d in demands if not d.decoding) <= chunk



def test_scoring_sequences_share_one_budget_of_logit_rows_per_step() -> None:
    # eight slots scoring long prompts: together at most score_chunk rows, not 8 x score_chunk
    demands = [SeqDemand(i, 500, False, scoring=True) for i in range(8)]
    out = plan(demands, n_batch=512, prefill_chunk=256, score_chunk=64)
    assert sum(out.values()) == 64 and out[0] == 64  # the oldest first; the others wait
    # a plain prefill and a decoder next to them still proceed
    demands += [SeqDemand(8, 300, False), SeqDemand(9, 1, True)]
    out = plan(demands, n_batch=512, prefill_chunk=256, score_chunk=64)
    assert sum(out.get(i, 0) for i in range(8)) <= 64 and out[9] == 1 and out[8] > 0
    # short scoring prompts leave the rest of the budget to the next one
    out = plan([SeqDemand(0, 10, False, scoring=True), SeqDemand(1, 100, False, scoring=True)], 512, 256, 64)
    assert out == {0: 10, 1: 54}


@given(st.lists(st.tuples(st.integers(1, 3000), st.sampled_from(["decode", "prefill", "score"])), max_size=40),
       st.integers(1, 1024), st.integers(1, 512), st.integers(1, 128))
def test_plan_never_asks_for_more_scoring_rows_than_the_budget(items: list[tuple[int, str]], n_batch: int,
                                                               chunk: int, score_chunk: int) -> None:
    demands = [SeqDemand(i, 1 if kind == "decode" else pending, kind == "decode", scoring=kind == "score")
               for i, (pending, kind) in enumerate(items)]
    out = plan(demands, n_batch, chunk, score_chunk)
    assert sum(out.values()) <= n_batch
    assert sum(out.get(d.seq_id, 0) for d in demands if d.scoring) <= score_chunk
    for d in demands:
        assert 0 <= out.get(d.seq_id, 0) <= d.pending
    if any(not d.decoding for d in demands) and len(demands) - sum(d.decoding for d in demands) > 0 \
            and n_batch > sum(d.decoding for d in demands):
        assert any(out.get(d.seq_id, 0) > 0 for d in demands if not d.decoding)  # nobody starves a whole step

def test_stop_string_split_across_pieces() -> None:
    m = StopMatcher(["</answer>"])
    emitted = []
    hit = False
    for piece in ["The result ", "is 42<", "/ans", "wer> and more"]:
        out, hit = m.feed(piece)
        emitted.append(out)
        if hit:
            break
    assert hit and "".join(emitted) == "The result is 42"


def test_false_alarm_prefix_is_released() -> None:
    m = StopMatcher(["STOP"])
    assert m.feed("ST") == ("", False)
    assert m.feed("ART") == ("START", False)
    assert m.flush() == ""


def test_earliest_of_several_stops_wins() -> None:
    m = StopMatcher(["world", "lo w"])
    out, hit = m.feed("hello world")
    assert hit and out == "hel"


def test_no_stops_passes_through() -> None:
    m = StopMatcher([])
    assert m.feed("abc") == ("abc", False)


@given(st.text(max_size=60), st.lists(st.text(min_size=1, max_size=5), max_size=3), st.integers(1, 7))
def test_stop_matcher_equals_reference(text: str, stops: list[str], size: int) -> None:
    m = StopMatcher(stops)
    out = []
    hit = False
    for i in range(0, len(text), size):
        piece, hit = m.feed(text[i:i + size])
        out.append(piece)
        if hit:
            break
    if not hit:
        out.append(m.flush())
    positions = [text.find(s) for s in stops if s and s in text]
    expected = text[: min(positions)] if positions else text
    assert "".join(out) == expected
