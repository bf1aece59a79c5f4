"""Token log-probabilities from llama.cpp's logits, vectorised in numpy.

Only requests that ask for them come here: without logprobs the decode loop does no extra work.
The distribution is the model's raw one (log-softmax of the logits at temperature 1), before the
sampler chain's penalties, grammar, temperature and truncation — what OpenAI and vLLM (its default
`raw_logprobs`) report, so a token the sampler was forced to pick still shows how likely the model
found it, and scores do not depend on sampling options.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import llama_cpp as ll
import numpy as np

from flexi.engine.types import TokenLogprob

_FLOAT = ctypes.sizeof(ctypes.c_float)


def logit_rows(ctx: Any, first: int, count: int, n_vocab: int) -> np.ndarray:
    """The logits of `count` consecutive batch positions from `first` (all with `logits` set), as a
    (count, n_vocab) float32 view of llama.cpp's buffer (valid until the next decode). llama.cpp keeps
    outputs in batch order, so consecutive positions are consecutive rows; should that ever not hold,
    the rows are copied one by one."""
    ptr = ll.llama_get_logits_ith(ctx, first)
    if count == 1:
        return np.ctypeslib.as_array(ptr, shape=(1, n_vocab))
    last = ll.llama_get_logits_ith(ctx, first + count - 1)
    start = ctypes.cast(ptr, ctypes.c_void_p).value or 0
    end = ctypes.cast(last, ctypes.c_void_p).value or 0
    if end - start == (count - 1) * n_vocab * _FLOAT:
        return np.ctypeslib.as_array(ptr, shape=(count, n_vocab))
    return np.stack([np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, first + i), shape=(n_vocab,))
                     for i in range(count)])


def log_softmax_at(rows: np.ndarray, chosen: Sequence[int], top_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of logits: the log-probability of its `chosen` token, and the `top_n` most likely
    tokens (ids and log-probabilities, best first; equal ones by lower id) — without materialising the
    whole log-softmax. The log-sum-exp is accumulated in float64 (49k-256k terms in float32 lose digits
    a sum of many token logprobs would show); the max is subtracted first, so exp never overflows.
    Returns (chosen logprobs [k], top ids [k, top_n], top logprobs [k, top_n])."""
    k = rows.shape[0]
    peak = rows.max(axis=1, keepdims=True)
    shifted = rows - peak  # float32, all ≤ 0
    lse = np.log(np.exp(shifted).sum(axis=1, dtype=np.float64))
    picked = shifted[np.arange(k), np.asarray(chosen, dtype=np.intp)].astype(np.float64) - lse
    if top_n <= 0:
        return picked, np.empty((k, 0), dtype=np.intp), np.empty((k, 0))
    n = min(top_n, rows.shape[1])
    part = np.argpartition(-shifted, n - 1, axis=1)[:, :n]  # the n largest, unordered
    vals = np.take_along_axis(shifted, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)  # by value descending, then id ascending
    ids = np.take_along_axis(part, order, axis=1)
    top = np.take_along_axis(vals, order, axis=1).astype(np.float64) - lse[:, None]
    return picked, ids, top


def entries(rows: np.ndarray, chosen: Sequence[int], top_n: int, piece: Callable[[int], bytes]) -> list[TokenLogprob]:
    """`TokenLogprob`s of the `chosen` tokens, one per row of logits."""
    picked, ids, top = log_softmax_at(rows, chosen, top_n)
    out = []
    for i, token in enumerate(chosen):
        alts = [(int(t), piece(int(t)), float(v)) for t, v in zip(ids[i], top[i])]
        out.append(TokenLogprob(int(token), piece(int(token)), float(picked[i]), alts))
    return out
