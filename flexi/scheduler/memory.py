"""Estimate what a runner will cost in memory before starting it.

Used for admission and eviction, so it must not fall below what the runner can really
allocate. Measured against the runner's RSS and llama.cpp's own buffer sizes
(benchmarks/bench_memory_estimate.py, results/memory-estimate.md), a runner holds:

- the weights (the GGUF file, mmapped);
- the generation context: the f16 KV cache for all slots (exact), and a compute buffer that
  llama.cpp reserves for a whole ubatch of logits (n_ubatch x n_vocab x 4 B) but only touches
  for the rows it outputs (one per sequence); with flash attention it hardly grows with the
  context. Together with the Python process and libraries that measured 82-90 MiB of RSS at
  every context and slot count, hence GENERATION_OVERHEAD;
- the embedder's context, created on the first embedding request and kept: its own KV cache
  for one sequence of num_ctx tokens and a compute buffer for a ubatch of num_ctx tokens
  (pooled embeddings need the whole input in one ubatch): num_ctx x (n_vocab + n_embd) x 4 B
  plus the f16 attention mask, num_ctx^2 x 2 B; and an output buffer that llama.cpp grows to
  one row of logits and embeddings per input token, another num_ctx x (n_vocab + n_embd) x 4 B
  (measured: a full 2k-token embedding took the runner from 221 to 1056 MiB). This is the
  context-dependent part: at 32k context it was ~15 GiB for a 135M model, and any caller could
  trigger it once and for all, so the embedder's context is capped at MAX_EMBED_CONTEXT (2048)
  tokens and counted at that size.
"""

from __future__ import annotations

from flexi.engine.types import MAX_EMBED_CONTEXT
from flexi.store.gguf_meta import GGUFInfo

MIB = 1024**2
GENERATION_OVERHEAD = 96 * MIB  # Python, libraries, touched compute buffer: measured 82-90 MiB (2k-32k, 1-4 slots)
UNKNOWN_VOCAB = 65536  # models cached before vocab_size was recorded


def kv_cache_bytes(info: GGUFInfo, num_ctx: int, num_parallel: int) -> int:
    layers = info.block_count or 32
    n_embd = info.embedding_length or 4096
    heads = info.head_count or 32
    kv_heads = info.head_count_kv or heads
    head_dim = n_embd // max(heads, 1)
    per_token = layers * 2 * kv_heads * head_dim * 2  # K and V, f16
    return per_token * num_ctx * num_parallel


def embedder_bytes(info: GGUFInfo, num_ctx: int) -> int:
    """The embedder's KV cache, compute buffer (one ubatch of num_ctx tokens) and output buffer, once an input
    fills the context (every row is an output when pooling, so both hold logits for every token)."""
    num_ctx = min(num_ctx, MAX_EMBED_CONTEXT)
    per_token = ((info.vocab_size or UNKNOWN_VOCAB) + (info.embedding_length or 4096)) * 4
    return kv_cache_bytes(info, num_ctx, 1) + 2 * num_ctx * per_token + num_ctx * num_ctx * 2


def estimate_runner_bytes(file_size: int, info: GGUFInfo, num_ctx: int, num_parallel: int) -> int:
    return file_size + kv_cache_bytes(info, num_ctx, num_parallel) + GENERATION_OVERHEAD + embedder_bytes(info, num_ctx)
