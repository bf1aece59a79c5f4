"""Estimate what a runner will cost in memory before starting it.

Good enough for admission and eviction decisions: weights (the file) plus the
KV cache for all slots plus a compute-buffer allowance.
"""

from __future__ import annotations

from flexi.store.gguf_meta import GGUFInfo

COMPUTE_OVERHEAD = 96 * 1024**2


def kv_cache_bytes(info: GGUFInfo, num_ctx: int, num_parallel: int) -> int:
    layers = info.block_count or 32
    n_embd = info.embedding_length or 4096
    heads = info.head_count or 32
    kv_heads = info.head_count_kv or heads
    head_dim = n_embd // max(heads, 1)
    per_token = layers * 2 * kv_heads * head_dim * 2  # K and V, f16
    return per_token * num_ctx * num_parallel


def estimate_runner_bytes(file_size: int, info: GGUFInfo, num_ctx: int, num_parallel: int) -> int:
    return file_size + kv_cache_bytes(info, num_ctx, num_parallel) + COMPUTE_OVERHEAD
