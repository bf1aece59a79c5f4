"""`flexi plan` against what a real runner really takes (issue 16): planned vs measured peak RSS.

Reuses the memory benchmark's measurement (`benchmarks/bench_memory_estimate.py`, `measure`): a real runner
as the scheduler starts it, a prompt that fills most of a slot, an embedding, then an embedding that fills
the embedder's context (the largest the runner can get). The planner's figure is the admission estimate
itself, so this checks both.

Tolerance: the plan must not fall short of the measured peak by more than 2 % (admission relies on it;
the page cache may drop a few of the mmapped weight pages under load, so RSS can be a little below the
file size's share) and may exceed it by at most 15 % (a larger excess wastes memory the budget could give
to other models). Measured on the 2-core development machine (Xeon, llama-cpp-python 0.3.36, 2026-12-03):
ctx 512 × 1 slot planned 407 MiB / measured 395 MiB (+3.0 %), 2048 × 2: 1110 / 1103 (+0.6 %),
4096 × 4: 1380 / 1374 (+0.4 %).
"""

from __future__ import annotations

import os

import pytest

from benchmarks.bench_memory_estimate import measure
from flexi.scheduler.capacity import Device, plan
from flexi.store.gguf_meta import read_gguf_info
from tests.store.test_gguf_meta import SMOLLM2

pytestmark = pytest.mark.e2e
CASES = [(512, 1), (2048, 2), (4096, 4)]
BELOW, ABOVE = 0.02, 0.15


@pytest.mark.parametrize("ctx, slots", CASES)
def test_plan_matches_the_measured_runner_rss(ctx: int, slots: int) -> None:
    info = read_gguf_info(SMOLLM2)
    planned = plan(SMOLLM2.stat().st_size, info, slots, ctx, Device("host", 64 * 1024**3)).memory.total
    measured = measure(SMOLLM2, ctx, slots, threads=min(2, os.cpu_count() or 1))
    peak = measured["peak_rss_full_embed"]
    error = (planned - peak) / peak
    print(f"ctx {ctx} slots {slots}: planned {planned / 2**20:.0f} MiB, measured peak {peak / 2**20:.0f} MiB, "
          f"error {100 * error:+.1f} %")
    assert -BELOW <= error <= ABOVE, (ctx, slots, planned, peak, f"{100 * error:+.1f} %")
