"""Batch planning, apart from mechanism: how many tokens each sequence gets next step.

Pure function, unit-tested without a model (the idea of Ollama's runner scheduler):
decoding sequences get one token each first so streams never stall; prefilling
sequences share what is left of the batch, oldest first, in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeqDemand:
    seq_id: int
    pending: int  # tokens not yet in the KV cache (1 for a decoding sequence)
    decoding: bool


def plan(demands: list[SeqDemand], n_batch: int, prefill_chunk: int) -> dict[int, int]:
    """Return seq_id → number of tokens to feed in the next decode call.

    - every decoding sequence gets exactly 1 token (if the batch has room);
    - prefilling sequences split the rest, each at most `prefill_chunk` tokens
      when anybody is decoding (so long prompts do not freeze other streams),
      otherwise up to the whole batch; earlier sequences in the list go first.
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
    # fair share: equal split, leftovers to the oldest
    remaining = list(prefilling)
    while budget > 0 and remaining:
        share = max(1, budget // len(remaining))
        still: list[SeqDemand] = []
        for d in remaining:
            if budget == 0:
                break
            have = out.get(d.seq_id, 0)
            take = min(share, d.pending - have, budget)
            if take > 0:
                out[d.seq_id] = have + take
                budget -= take
            if out.get(d.seq_id, 0) < d.pending:
                still.append(d)
        remaining = still
    return out
