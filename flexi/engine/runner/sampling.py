"""Build a llama.cpp sampler chain for one sequence from its sampling parameters."""

from __future__ import annotations

from typing import Any

import llama_cpp as ll

from flexi.engine.runner.protocol import Sampling

NEG_INF = float("-inf")


class GrammarError(ValueError):
    """The grammar could not be compiled by llama.cpp."""


def build_chain(vocab: Any, n_vocab: int, params: Sampling, grammar: str | None, ban_tokens: list[int]) -> Any:
    """Return an owned llama_sampler chain; free it with ll.llama_sampler_free.

    Order follows llama.cpp's common sampler: grammar → bias → penalties →
    top-k → typical → top-p → min-p → temperature → distribution. Temperature
    ≤ 0 means greedy, as in Ollama.
    """
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    try:
        if grammar:
            g = ll.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not g:
                raise GrammarError("the output format could not be compiled into a grammar")
            ll.llama_sampler_chain_add(chain, g)
        if ban_tokens:
            arr = (ll.llama_logit_bias * len(ban_tokens))()
            for i, tok in enumerate(ban_tokens):
                arr[i].token = tok
                arr[i].bias = NEG_INF
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_logit_bias(n_vocab, len(ban_tokens), arr))
        repeat = params.repeat_penalty
        freq = params.frequency_penalty
        presence = params.presence_penalty
        last_n = params.repeat_last_n
        if last_n != 0 and (repeat != 1.0 or freq != 0.0 or presence != 0.0):
            last_n = -1 if last_n < 0 else last_n
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_penalties(n_vocab, last_n, repeat, freq, presence))
        temperature = params.temperature
        if temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        top_k = params.top_k
        if top_k > 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(top_k))
        typical = params.typical_p
        if 0 < typical < 1:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_typical(typical, 1))
        top_p = params.top_p
        if 0 < top_p < 1:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(top_p, 1))
        min_p = params.min_p
        if min_p > 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(min_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(temperature))
        seed = params.seed
        seed = ll.LLAMA_DEFAULT_SEED if seed is None or seed < 0 else seed & 0xFFFFFFFF
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
        return chain
    except Exception:
        ll.llama_sampler_free(chain)
        raise

