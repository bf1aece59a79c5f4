"""`flexi plan`: will a model fit, for how many users, and how fast can one stream be? Pure arithmetic.

Memory comes from `flexi.scheduler.memory.runner_memory`, the very function the scheduler's admission
uses, so the plan and the server can never disagree: one runner with one slot per concurrent user (the
server's FLEXI_NUM_PARALLEL), each slot owning `num_ctx` cells (the KV cache is not unified). The context
is clamped to the model's training context as the server does.

Speed: decoding one token reads every weight once, so one stream cannot be faster than memory bandwidth /
weight bytes. That is an upper bound (real runners reach roughly half to three quarters of it and also
read the KV cache), labelled as such wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flexi.scheduler.memory import (
    CACHE_TYPES,
    KVShape,
    RunnerMemory,
    kv_shape,
    runner_memory,
)
from flexi.store.gguf_meta import GGUFInfo

GIB = 1024**3
MAX_SLOTS = 64  # Settings.num_parallel's upper bound: more users need replicas


@dataclass(frozen=True)
class Device:
    """Where the runner would live: a memory budget and, when known, its memory bandwidth."""

    name: str
    memory: int  # bytes
    bandwidth: float | None = None  # bytes per second
    source: str = "gpu"  # gpu | mem | budget (FLEXI_MAX_MEMORY)


# Common data-centre and workstation GPUs: memory as sold (GB there means GiB of VRAM) and peak memory
# bandwidth from the vendor's data sheet (GB/s, 10^9 bytes).
GPUS: dict[str, tuple[float, float]] = {
    "a100-40gb": (40, 1555), "a100-80gb": (80, 2039), "h100-sxm": (80, 3350), "h100-pcie": (80, 2000),
    "h200": (141, 4800), "l40s": (48, 864), "l40": (48, 864), "l4": (24, 300), "a10": (24, 600),
    "rtx-a6000": (48, 768), "rtx-6000-ada": (48, 960), "rtx-4090": (24, 1008), "rtx-3090": (24, 936),
    "t4": (16, 320), "v100-16gb": (16, 900), "v100-32gb": (32, 900),
}
ALIASES = {"a100": "a100-80gb", "h100": "h100-sxm", "a6000": "rtx-a6000", "4090": "rtx-4090", "3090": "rtx-3090",
           "v100": "v100-32gb", "rtx4090": "rtx-4090", "rtx3090": "rtx-3090"}


def gpu(name: str) -> Device | None:
    """A GPU of the built-in table by name (case and `_`/space insensitive), or None."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = ALIASES.get(key, key)
    if key not in GPUS:
        return None
    memory, bandwidth = GPUS[key]
    return Device(key, int(memory * GIB), bandwidth * 1e9, "gpu")


@dataclass(frozen=True)
class Plan:
    """Everything `flexi plan` shows; `notes` are (message key, values) for the caller to translate."""

    num_ctx: int
    users: int
    cache_type: str
    shape: KVShape
    memory: RunnerMemory
    device: Device
    fits: bool
    max_users: int  # the most concurrent sequences (slots of num_ctx) that fit the device
    tokens_per_second_bound: float | None
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_ctx": self.num_ctx, "users": self.users, "cache_type": self.cache_type,
            "kv": {"layers": self.shape.layers, "kv_heads": sorted(set(self.shape.kv_heads)),
                   "key_dim": self.shape.key_dim, "value_dim": self.shape.value_dim,
                   "bytes_per_element": CACHE_TYPES[self.cache_type], "sliding_window": self.shape.sliding_window,
                   "bytes_per_token": int(self.shape.elements_per_token() * CACHE_TYPES[self.cache_type])},
            "memory": {"weights": self.memory.weights, "kv_cache": self.memory.kv_cache, "compute": self.memory.compute,
                       "embedder": self.memory.embedder, "scoring": self.memory.scoring, "total": self.memory.total},
            "device": {"name": self.device.name, "memory": self.device.memory, "bandwidth": self.device.bandwidth,
                       "source": self.device.source},
            "fits": self.fits, "max_users": self.max_users,
            "tokens_per_second_upper_bound": self.tokens_per_second_bound,
            "notes": [{"key": key, **values} for key, values in self.notes],
        }


def max_users(file_size: int, info: GGUFInfo, num_ctx: int, budget: int, cache_type: str = "f16") -> int:
    """The largest slot count whose runner fits `budget` (0: not even one)."""
    fixed = runner_memory(file_size, info, num_ctx, 0, cache_type).total
    per_slot = runner_memory(file_size, info, num_ctx, 1, cache_type).total - fixed
    if fixed + per_slot > budget:
        return 0
    n = (budget - fixed) // max(per_slot, 1)
    while n > 0 and runner_memory(file_size, info, num_ctx, n, cache_type).total > budget:
        n -= 1  # the KV size is rounded per call; never claim a slot that does not fit
    return int(n)


def plan(file_size: int, info: GGUFInfo, users: int, num_ctx: int, device: Device, cache_type: str = "f16") -> Plan:
    """The memory `users` concurrent sequences of `num_ctx` tokens need, and what `device` can take."""
    if cache_type not in CACHE_TYPES:
        raise ValueError(f"cache type must be one of {', '.join(CACHE_TYPES)}")
    if users < 1 or num_ctx < 1:
        raise ValueError("users and context must be at least 1")
    notes: list[tuple[str, dict[str, Any]]] = []
    if info.context_length and num_ctx > info.context_length:
        notes.append(("plan_note_clamped", {"asked": num_ctx, "trained": info.context_length}))
        num_ctx = info.context_length
    shape = kv_shape(info)
    if shape.sliding_window:
        notes.append(("plan_note_swa", {"window": shape.sliding_window}))
    if cache_type != "f16":
        notes.append(("plan_note_cache_type", {"cache_type": cache_type}))
    memory = runner_memory(file_size, info, num_ctx, users, cache_type)
    most = max_users(file_size, info, num_ctx, device.memory, cache_type)
    if users > MAX_SLOTS or most > MAX_SLOTS:
        notes.append(("plan_note_slots", {"slots": MAX_SLOTS}))
    bound = device.bandwidth / file_size if device.bandwidth and file_size else None
    return Plan(num_ctx, users, cache_type, shape, memory, device, memory.total <= device.memory, most, bound, notes)
