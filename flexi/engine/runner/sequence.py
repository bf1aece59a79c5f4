"""One generation request inside the runner: its tokens, sampler, stops and timings."""

from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import Any

from flexi.engine.runner.protocol import Done
from flexi.engine.runner.stops import StopMatcher
from flexi.engine.types import FinishReason, TokenLogprob


@dataclass
class Slot:
    """A llama.cpp sequence id and the tokens its KV cells currently hold (prefix cache)."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    busy: bool = False


@dataclass
class Sequence:
    req_id: int
    prompt: list[int]
    max_new: int
    ignore_eos: bool
    return_tokens: bool
    chain: Any
    stops: StopMatcher
    t_admit: float = field(default_factory=time.perf_counter)
    slot: Slot | None = None
    pending: list[int] = field(default_factory=list)  # tokens still to feed into the KV cache
    n_past: int = 0
    cached_tokens: int = 0
    generated: list[int] = field(default_factory=list)
    decoding: bool = False
    cancelled: bool = False
    t_first: float | None = None
    text_out: int = 0
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    top_logprobs: int = -1  # ≥ 0: logprobs of generated tokens with this many alternatives
    scored: list[TokenLogprob] | None = None  # prompt scoring: the prompt's entries so far (None: not asked)

    def stats(self, reason: FinishReason) -> Done:
        now = time.perf_counter()
        first = self.t_first if self.t_first is not None else now
        return Done(finish_reason=reason, prompt_tokens=len(self.prompt), completion_tokens=len(self.generated),
                    cached_tokens=self.cached_tokens, prompt_eval_ns=int((first - self.t_admit) * 1e9),
                    eval_ns=int((now - first) * 1e9),
                    tokens=self.prompt + self.generated if self.return_tokens else None)
