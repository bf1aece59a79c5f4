"""The planner's arithmetic: exact KV cache from GGUF metadata, one formula with admission, fits, most users."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flexi.scheduler.capacity import GIB, MAX_SLOTS, Device, gpu, max_users, plan
from flexi.scheduler.memory import (
    GENERATION_OVERHEAD,
    estimate_runner_bytes,
    kv_cache_bytes,
    kv_shape,
    runner_memory,
)
from flexi.store.gguf_meta import GGUFInfo, read_gguf_info
from tests.store.test_gguf_meta import SMOLLM2

INFO = read_gguf_info(SMOLLM2)
SIZE = SMOLLM2.stat().st_size


def test_smollm2_kv_cache_is_two_times_layers_heads_dim_bytes_ctx_slots():
    shape = kv_shape(INFO)
    assert (shape.layers, set(shape.kv_heads), shape.key_dim, shape.value_dim) == (30, {3}, 64, 64)
    assert kv_cache_bytes(INFO, 2048, 4) == 2 * 30 * 3 * 64 * 2 * 2048 * 4
    assert kv_cache_bytes(INFO, 2048, 4, "q8_0") == 2 * 30 * 3 * 64 * 2048 * 4 * 34 // 32
    assert kv_cache_bytes(INFO, 2048, 4, "q4_0") == 2 * 30 * 3 * 64 * 2048 * 4 * 18 // 32


def test_head_dimension_and_per_layer_kv_heads_come_from_the_metadata():
    # Qwen3-0.6B: 1024 wide, 16 heads, but 128-dimensional heads (key_length), 8 KV heads, 28 layers
    qwen3 = GGUFInfo("qwen3", embedding_length=1024, block_count=28, head_count=16, head_count_kv=8,
                     model_info={"qwen3.attention.key_length": 128, "qwen3.attention.value_length": 128})
    assert kv_cache_bytes(qwen3, 1000, 1) == 2 * 28 * 8 * 128 * 2 * 1000
    varying = GGUFInfo("openelm", embedding_length=1280, block_count=3, head_count=20,
                       model_info={"openelm.attention.head_count_kv": [3, 4, 5], "openelm.attention.key_length": 64})
    assert kv_cache_bytes(varying, 10, 1) == (3 + 4 + 5) * 2 * 64 * 2 * 10
    swa = GGUFInfo("gemma2", embedding_length=2304, block_count=26, head_count=8, head_count_kv=4,
                   model_info={"gemma2.attention.key_length": 256, "gemma2.attention.sliding_window": 4096})
    assert kv_shape(swa).sliding_window == 4096
    assert kv_cache_bytes(swa, 8192, 1) == 2 * 26 * 4 * 256 * 2 * 8192  # swa_full: all layers at full context
    assert ("plan_note_swa", {"window": 4096}) in plan(10**9, swa, 1, 8192, Device("x", 64 * GIB)).notes


def test_plan_uses_the_admission_estimate_itself():
    for ctx, users in ((512, 1), (2048, 2), (4096, 4)):
        p = plan(SIZE, INFO, users, ctx, Device("host", 16 * GIB, None, "budget"))
        assert p.memory.total == estimate_runner_bytes(SIZE, INFO, ctx, users)
        assert p.memory.weights == SIZE and p.memory.compute == GENERATION_OVERHEAD
        assert p.memory.kv_cache == kv_cache_bytes(INFO, ctx, users)


def test_the_plan_counts_the_logit_rows_of_one_scoring_step_once_per_runner():
    from flexi.engine.types import SCORE_CHUNK

    rows = SCORE_CHUNK * INFO.vocab_size * 4  # llama.cpp's output buffer: all scoring sequences share the chunk
    for users in (1, 4):
        memory = plan(SIZE, INFO, users, 2048, Device("host", 16 * GIB)).memory
        assert memory.scoring == rows
        assert memory.total == memory.weights + memory.kv_cache + memory.compute + memory.embedder + rows
    assert plan(SIZE, INFO, 1, 2048, Device("host", 16 * GIB)).to_dict()["memory"]["scoring"] == rows


def test_fits_and_the_most_users_are_exact_at_the_boundary():
    budget = runner_memory(SIZE, INFO, 2048, 7).total
    assert max_users(SIZE, INFO, 2048, budget) == 7
    assert max_users(SIZE, INFO, 2048, budget - 1) == 6
    assert plan(SIZE, INFO, 7, 2048, Device("m", budget)).fits
    assert not plan(SIZE, INFO, 8, 2048, Device("m", budget)).fits
    assert max_users(SIZE, INFO, 2048, runner_memory(SIZE, INFO, 2048, 1).total - 1) == 0
    q4 = max_users(SIZE, INFO, 2048, 4 * GIB, "q4_0")
    assert q4 > max_users(SIZE, INFO, 2048, 4 * GIB) and runner_memory(SIZE, INFO, 2048, q4, "q4_0").total <= 4 * GIB


def test_context_is_clamped_like_the_server_and_notes_say_so():
    p = plan(SIZE, INFO, 1, 100_000, Device("m", 64 * GIB))
    assert p.num_ctx == INFO.context_length == 8192
    assert ("plan_note_clamped", {"asked": 100_000, "trained": 8192}) in p.notes
    assert any(key == "plan_note_slots" for key, _ in p.notes)  # far more than MAX_SLOTS users fit
    assert plan(SIZE, INFO, 1, 512, Device("m", 64 * GIB), "q8_0").notes[0][0] == "plan_note_cache_type"
    with pytest.raises(ValueError):
        plan(SIZE, INFO, 1, 512, Device("m", GIB), "q5_1")
    assert MAX_SLOTS == 64


def test_speed_bound_is_bandwidth_over_weights_and_gpus_come_from_the_table():
    t4 = gpu("T4")
    assert t4 is not None and t4.memory == 16 * GIB and t4.bandwidth == 320e9
    assert gpu("H100") == gpu("h100_sxm") and gpu("A100") is not None and gpu("rtx 4090") is not None
    assert gpu("voodoo2") is None
    p = plan(SIZE, INFO, 1, 2048, t4)
    assert p.tokens_per_second_bound == pytest.approx(320e9 / SIZE)
    assert plan(SIZE, INFO, 1, 2048, Device("host", GIB)).tokens_per_second_bound is None
    big = replace(INFO, parameter_count=8 * 10**9)
    assert not plan(20 * GIB, big, 1, 2048, t4).fits
