"""Batch planning, apart from mechanism: which slot a new sequence takes, and how
many tokens each sequence gets next step.

Pure functions, unit-tested without a model (the idea of Ollama's runner scheduler):
decoding sequences get one token each first so streams never stall; prefilling
sequences share what is left of the batch, oldest first, in chunks.

Why slots are packed low: Flexi gives every slot its own KV stream (llama.cpp's
non-unified cache). llama.cpp then splits a batch into one micro-batch per run of
consecutive sequence ids (`split_equal(..., sequential=true)`), and every micro-batch
reads all weights again. Sequences in slots 0-7 decode in one pass; the same eight
spread over slots 0-15 can take several. So a new sequence takes a slot next to
busy ones (gaps fill first) unless another slot's cache saves more work than the
split costs (see pick_slot), and the batch lists tokens in slot order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flexi.engine.runner.sequence import Slot


# Costs in tokens of prefill. A slot that splits the batch once more costs one extra
# weight pass per decode step for the sequence's whole life (on 2 cores ~12 ms a step,
# over a 128-token answer about as much as prefilling 500 tokens), so a split is only
# worth a long cached prefix. Discarding a slot's cache costs only if the same text
# comes again before the slot is needed anyway (a chat's next turn), so its tokens
# count a tenth: a cache is given up when that saves a tenth of its length now.
SCATTER_WORTH = 256
KEEP_WEIGHT = 0.1


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pick_slot(slots: Sequence[Slot], prompt: list[int]) -> Slot:
    """The free slot a new sequence takes (at least one must be free): the cheapest in
    tokens of prefill now (the prompt minus what the slot's cache shares), cached work
    discarded (KEEP_WEIGHT per token) and extra batch splits (SCATTER_WORTH each,
    counted against the best-packed free slot); ties go to the lowest id.

    So an idle server fills empty slots first and keeps a course assistant's long
    instructions cached; a busy one packs new sequences next to the running ones
    unless a conversation's earlier turns or long instructions are cached elsewhere.
    """
    busy = {s.seq_id for s in slots if s.busy}
    free = [s for s in slots if not s.busy]

    def joins(s: Slot) -> int:
        return (s.seq_id - 1 in busy) + (s.seq_id + 1 in busy)

    most = max(joins(s) for s in free)

    def cost(s: Slot) -> tuple[float, int]:
        shared = common_prefix(s.cached, prompt)
        return ((len(prompt) - shared) + KEEP_WEIGHT * (len(s.cached) - shared)
                + SCATTER_WORTH * (most - joins(s)), s.seq_id)

    return min(free, key=cost)


@dataclass(frozen=True)
class SeqDemand:
    seq_id: int
    pending: int  # tokens not yet in the KV cache (1 for a decoding sequence)
    decoding: bool
    scoring: bool = False  # prefilling a prompt whose every token needs its row of logits


def plan(demands: list[SeqDemand], n_batch: int, prefill_chunk: int, score_chunk: int | None = None) -> dict[int, int]:
    """Return seq_id → number of tokens to feed in the next decode call.

    - every decoding sequence gets exactly 1 token (if the batch has room);
    - prefilling sequences split the rest, each at most `prefill_chunk` tokens
      when anybody is decoding (so long prompts do not freeze other streams),
      otherwise up to the whole batch; earlier sequences in the list go first;
    - scoring sequences together get at most `score_chunk` tokens per step (None: no cap): each of their
      tokens asks llama.cpp for a row of logits, and its output buffer grows to the most rows one step
      asks for and never shrinks, so the cap bounds that memory however many slots score at once. A
      scoring sequence left without tokens this step waits; the others proceed.
    """
    out: dict[int, int] = {}
    budget = n_batch
    decoding = [d for d in demands if d.decoding and d.pending > 0]
    for d in decoding:
        if budget == 0:
            break
        out[d.seq_id] = 1
        budget -= 1
    prefilling = [d for d in demands if not d.decoding and d.pending > 0]
    if not prefilling or budget == 0:
        return out
    cap = prefill_chunk if decoding else n_batch
    budget = min(budget, cap) if decoding else budget
    score_left = n_batch if score_chunk is None else score_chunk
    # fair share: equal split, leftovers to the oldest
    remaining = [d for d in prefilling if not d.scoring or score_left > 0]
    while budget > 0 and remaining:
        share = max(1, budget // len(remaining))
        still: list[SeqDemand] = []
        for d in remaining:
            if budget == 0:
                break
            have = out.get(d.seq_id, 0)
            take = min(share, d.pending - have, budget, score_left if d.scoring else budget)
            if take > 0:
                out[d.seq_id] = have + take
                budget -= take
                if d.scoring:
                    score_left -= take
            if out.get(d.seq_id, 0) < d.pending and (not d.scoring or score_left > 0):
                still.append(d)
        remaining = still
    return out
