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
- prompt scoring (logprobs of an echoed prompt): llama.cpp's output buffer grows to the most logit
  rows one step asks for and never shrinks; the runner lets all scoring sequences together ask for at
  most SCORE_CHUNK rows a step, so that is SCORE_CHUNK x n_vocab x 4 B (12 MiB at a 49k vocabulary),
  counted for every runner because any request may ask for it;
- the embedder's context, created on the first embedding request and kept: its own KV cache
  for one sequence of num_ctx tokens and a compute buffer for a ubatch of num_ctx tokens
  (pooled embeddings need the whole input in one ubatch): num_ctx x (n_vocab + n_embd) x 4 B
  plus the f16 attention mask, num_ctx^2 x 2 B; and an output buffer that llama.cpp grows to
  one row of logits and embeddings per input token, another num_ctx x (n_vocab + n_embd) x 4 B
  (measured: a full 2k-token embedding took the runner from 221 to 1056 MiB). This is the
  context-dependent part: at 32k context it was ~15 GiB for a 135M model, and any caller could
  trigger it once and for all, so the embedder's context is capped at MAX_EMBED_CONTEXT (2048)
  tokens and counted at that size.

The same function sizes `flexi plan` (flexi/scheduler/capacity.py), so the planner and admission can
never disagree. The KV cache is exact from the GGUF metadata: per layer 2 (K and V) x KV heads x head
dimension (`attention.key_length`/`value_length` when the file has them, as Gemma and Qwen3 do, else
embedding length / heads) x bytes per element of the cache type x context x slots. Layers with a
sliding window (`attention.sliding_window`) are counted at the full context, because the runner leaves
llama.cpp's `swa_full` at its default (true): llama.cpp then gives those layers full-size caches too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flexi.engine.types import MAX_EMBED_CONTEXT, SCORE_CHUNK
from flexi.store.gguf_meta import GGUFInfo

MIB = 1024**2
GENERATION_OVERHEAD = 96 * MIB  # Python, libraries, touched compute buffer: measured 82-90 MiB (2k-32k, 1-4 slots)
UNKNOWN_VOCAB = 65536  # models cached before vocab_size was recorded


# Bytes per cached element: f16, and llama.cpp's block formats (32 values in 34 resp. 18 bytes with their scale).
CACHE_TYPES: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class KVShape:
    """What one cached token costs, per layer, as the GGUF metadata says."""

    kv_heads: tuple[int, ...]  # per layer (some files give one number for all, some a list)
    key_dim: int
    value_dim: int
    sliding_window: int | None  # tokens, when the model has sliding-window attention layers

    @property
    def layers(self) -> int:
        return len(self.kv_heads)

    def elements_per_token(self) -> int:
        return sum(heads * (self.key_dim + self.value_dim) for heads in self.kv_heads)


def _meta_int(info: GGUFInfo, key: str) -> Any:
    value = info.model_info.get(f"{info.architecture}.{key}")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def kv_shape(info: GGUFInfo) -> KVShape:
    layers = info.block_count or 32
    n_embd = info.embedding_length or 4096
    heads = info.head_count or 32
    raw_kv = info.model_info.get(f"{info.architecture}.attention.head_count_kv")
    if isinstance(raw_kv, list) and len(raw_kv) == layers and all(isinstance(h, int) and h >= 0 for h in raw_kv):
        per_layer = tuple(raw_kv)  # e.g. OpenELM: a different number of KV heads in every layer
    else:
        per_layer = (info.head_count_kv or heads,) * layers
    head_dim = n_embd // max(heads, 1)
    key_dim = _meta_int(info, "attention.key_length") or head_dim
    value_dim = _meta_int(info, "attention.value_length") or key_dim
    return KVShape(per_layer, key_dim, value_dim, _meta_int(info, "attention.sliding_window"))


def kv_cache_bytes(info: GGUFInfo, num_ctx: int, num_parallel: int, cache_type: str = "f16") -> int:
    """K and V for every layer, slot and context cell (sliding-window layers at full size: swa_full)."""
    per_token = kv_shape(info).elements_per_token() * CACHE_TYPES[cache_type]
    return int(per_token * num_ctx * num_parallel)


def embedder_bytes(info: GGUFInfo, num_ctx: int, cache_type: str = "f16") -> int:
    """The embedder's KV cache, compute buffer (one ubatch of num_ctx tokens) and output buffer, once an input
    fills the context (every row is an output when pooling, so both hold logits for every token)."""
    num_ctx = min(num_ctx, MAX_EMBED_CONTEXT)
    per_token = ((info.vocab_size or UNKNOWN_VOCAB) + (info.embedding_length or 4096)) * 4
    return kv_cache_bytes(info, num_ctx, 1, cache_type) + 2 * num_ctx * per_token + num_ctx * num_ctx * 2


def scoring_bytes(info: GGUFInfo) -> int:
    """llama.cpp's output buffer once prompt scoring asked for its most rows in one step (SCORE_CHUNK)."""
    return SCORE_CHUNK * (info.vocab_size or UNKNOWN_VOCAB) * 4


@dataclass(frozen=True)
class RunnerMemory:
    """The parts of one runner's memory; `total` is what admission reserves."""

    weights: int
    kv_cache: int
    compute: int  # GENERATION_OVERHEAD: compute buffers, Python and libraries (measured)
    embedder: int
    scoring: int = 0  # scoring_bytes: logit rows of prompt scoring

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.embedder + self.scoring


def runner_memory(file_size: int, info: GGUFInfo, num_ctx: int, num_parallel: int,
                  cache_type: str = "f16") -> RunnerMemory:
    return RunnerMemory(file_size, kv_cache_bytes(info, num_ctx, num_parallel, cache_type), GENERATION_OVERHEAD,
                        embedder_bytes(info, num_ctx, cache_type), scoring_bytes(info))


def estimate_runner_bytes(file_size: int, info: GGUFInfo, num_ctx: int, num_parallel: int,
                          cache_type: str = "f16") -> int:
    return runner_memory(file_size, info, num_ctx, num_parallel, cache_type).total
