"""Embeddings from the loaded model, on a second llama.cpp context made on first use.

Generation and embeddings need different context settings (pooled outputs,
whole input in one micro-batch), so they get separate contexts over the same
weights; the weights are memory-mapped once.

Several short inputs are embedded in one llama_decode as separate sequences (a "pack"): one pass over the
weights for many short inputs, as llama-cpp-python's `embed(list)` does. A pack holds at most PACK_TOKENS
tokens, which also bounds how long streams sharing the runner wait between two decode steps.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp as ll
import numpy as np

from flexi.engine.runner.errors import RequestError
from flexi.engine.runner.model import LoadedModel
from flexi.engine.types import MAX_EMBED_CONTEXT

PACK_TOKENS = 128
"""Token budget of one pack (an input longer than this, up to the context, goes alone). Small on purpose:
attention over a pack grows with the square of its tokens, so on CPU all-MiniLM-L6-v2 embedded ingest chunks
(~180 tokens) 1.4x faster one per decode than in 512-token packs (benchmarks/results/embedding.md); packing
pays off for short inputs (queries, titles), where one decode per input is mostly fixed cost."""
MAX_PACK_SEQS = 64
"""Sequences per pack: llama.cpp keeps one pooled output per sequence id."""


class Embedder:
    def __init__(self, model: LoadedModel, n_ctx: int, n_threads: int) -> None:
        self.model = model
        self.n_ctx = min(n_ctx, MAX_EMBED_CONTEXT)
        self.n_threads = n_threads
        self.ctx: Any = None
        self.batch: Any = None

    def _ensure_context(self) -> None:
        if self.ctx:
            return
        params = ll.llama_context_default_params()
        params.n_ctx = self.n_ctx
        params.n_batch = self.n_ctx
        params.n_ubatch = self.n_ctx
        params.n_seq_max = min(MAX_PACK_SEQS, ll.llama_max_parallel_sequences())
        params.kv_unified = True  # a pack's sequences share the n_ctx cells (not n_ctx / n_seq_max each)
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.embeddings = True
        if self._own_pooling():  # an embedding model (BERT family): its own pooling (mean, CLS, …), and no
            params.pooling_type = ll.LLAMA_POOLING_TYPE_UNSPECIFIED  # flash attention, which makes llama.cpp's
            params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED  # non-causal CPU path ~20 % slower
        else:
            params.pooling_type = ll.LLAMA_POOLING_TYPE_MEAN  # decoder-only models have none of their own
        params.no_perf = True
        self.ctx = ll.llama_init_from_model(self.model.ptr, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create an embedding context")
        self.batch = ll.llama_batch_init(self.n_ctx, 0, 1)

    def _own_pooling(self) -> bool:
        """True when the model file names its pooling (`<arch>.pooling_type` > 0), as embedding models do."""
        buf = ctypes.create_string_buffer(64)
        if ll.llama_model_meta_val_str(self.model.ptr, b"general.architecture", buf, len(buf)) < 0:
            return False
        key = buf.value + b".pooling_type"
        if ll.llama_model_meta_val_str(self.model.ptr, key, buf, len(buf)) < 0:
            return False
        try:
            return int(buf.value) > 0
        except ValueError:
            return False

    @property
    def pack_tokens(self) -> int:
        return min(self.n_ctx, PACK_TOKENS)

    @property
    def max_pack_seqs(self) -> int:
        return min(MAX_PACK_SEQS, ll.llama_max_parallel_sequences())

    def tokens_for(self, text: str, truncate: bool) -> list[int]:
        """The tokens embedded for `text`: cut to the context when truncating, else an error when too long."""
        tokens = self.model.tokenize(text, add_special=True) or [self.model.bos]
        if len(tokens) > self.n_ctx:
            if not truncate:
                raise RequestError(f"input is too long: {len(tokens)} tokens, the context is {self.n_ctx} (set truncate to true)")
            tokens = tokens[: self.n_ctx]
        return tokens

    def embed_pack(self, inputs: list[list[int]], normalize: bool) -> list[list[float]]:
        """Token lists (together at most the context, at most max_pack_seqs of them) → one vector each, in order,
        from one llama_decode with one sequence per input."""
        self._ensure_context()
        assert 0 < len(inputs) <= self.max_pack_seqs and sum(map(len, inputs)) <= self.n_ctx
        ll.llama_memory_clear(ll.llama_get_memory(self.ctx), True)
        b = self.batch
        i = 0
        for seq, tokens in enumerate(inputs):
            for pos, tok in enumerate(tokens):
                b.token[i] = tok
                b.pos[i] = pos
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = True
                i += 1
        b.n_tokens = i
        rc = ll.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama.cpp embedding decode failed (code {rc})")
        n_embd = self.model.n_embd
        vectors = np.empty((len(inputs), n_embd), dtype=np.float64)
        for seq in range(len(inputs)):
            ptr = ll.llama_get_embeddings_seq(self.ctx, seq)
            if not ptr:
                raise RuntimeError(f"llama.cpp returned no embedding for sequence {seq}")
            vectors[seq] = np.ctypeslib.as_array(ptr, shape=(n_embd,))
        if normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            norms[norms == 0.0] = 1.0
            vectors /= norms
        return vectors.tolist()

    def embed_one(self, text: str, truncate: bool, normalize: bool) -> tuple[list[float], int]:
        """One input → (vector, tokens used)."""
        tokens = self.tokens_for(text, truncate)
        return self.embed_pack([tokens], normalize)[0], len(tokens)

    def close(self) -> None:
        if self.ctx:
            ll.llama_batch_free(self.batch)
            ll.llama_free(self.ctx)
            self.ctx = None
