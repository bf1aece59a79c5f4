"""Embeddings from the loaded model, on a second llama.cpp context made on first use.

Generation and embeddings need different context settings (pooled outputs,
whole input in one micro-batch), so they get separate contexts over the same
weights; the weights are memory-mapped once.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import llama_cpp as ll

from flexi.engine.runner.errors import RequestError
from flexi.engine.runner.model import LoadedModel
from flexi.engine.types import MAX_EMBED_CONTEXT




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
        params.n_seq_max = 1
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

    def embed_one(self, text: str, truncate: bool, normalize: bool) -> tuple[list[float], int]:
        """One input → (vector, tokens used). The engine calls this between decode steps, one input at a
        time, so a large embedding request never freezes the streams sharing the runner."""
        self._ensure_context()
        tokens = self.model.tokenize(text, add_special=True) or [self.model.bos]
        if len(tokens) > self.n_ctx:
            if not truncate:
                raise RequestError(f"input is too long: {len(tokens)} tokens, the context is {self.n_ctx} (set truncate to true)")
            tokens = tokens[: self.n_ctx]
        ll.llama_memory_clear(ll.llama_get_memory(self.ctx), True)
        b = self.batch
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = True
        b.n_tokens = len(tokens)
        rc = ll.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama.cpp embedding decode failed (code {rc})")
        ptr = ll.llama_get_embeddings_seq(self.ctx, 0)
        vec = [float(ptr[i]) for i in range(self.model.n_embd)]
        if normalize:
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            vec = [v / norm for v in vec]
        return vec, len(tokens)

    def close(self) -> None:
        if self.ctx:
            ll.llama_batch_free(self.batch)
            ll.llama_free(self.ctx)
            self.ctx = None
