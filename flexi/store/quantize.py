"""`flexi quantize`: a new quantization of an installed model, registered in the model store.

llama.cpp's quantizer (`llama_model_quantize`, through llama-cpp-python) runs in a child process
(`python -m flexi.store.quantize_worker`): a crash or an abort inside the C++ code then ends that
process, never the caller (the CLI or, later, the server). Requantizing an already quantized file is
allowed on purpose: the default model ships only as Q4_1, so every quantization made from it
inherits Q4_1's rounding loss on top of its own. The result is written inside the blob store as a
temporary file, registered under its digest like `flexi create` does, and carries over the source's
template, system prompt, parameters and licence.

Some types cannot be used for every tensor: K-quants work on blocks of 256 values, so a tensor
whose rows are not a multiple of 256 long (SmolLM2-135M: 576) falls back to a legacy type. The
quantizer says so on stderr; `fallbacks` counts those lines so the report can tell what a "Q4_K_M"
file really contains, and `tensor_types` reads the mix back from the written file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexi.engine.types import BadRequest, EngineError

from .gguf_meta import read_gguf_info
from .names import parse_model_name
from .store import ModelRecord, ModelStore, _as_name

# llama_ftype values of llama.h (stable ABI numbers; tests check them against llama_cpp's constants).
QUANT_TYPES: dict[str, int] = {
    "F16": 1,
    "Q8_0": 7,
    "Q6_K": 18,
    "Q5_K_M": 17,
    "Q5_0": 8,
    "Q4_K_M": 15,
    "Q4_0": 2,
    "Q3_K_M": 12,
    "Q2_K": 10,
}
DEFAULT_TIMEOUT_S = 3600.0
_FALLBACK = re.compile(r"required for type\s+(\w+)\)\s*->\s*falling back to\s+(\w+)")


class QuantizeError(EngineError):
    """The quantizer failed or was asked for something it cannot do."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=400, code="quantize_failed")


@dataclass
class QuantizeResult:
    """What one quantizer run did: the requested type and which tensors fell back to which type."""

    quant: str
    seconds: float = 0.0
    fallbacks: dict[str, int] = field(default_factory=dict)  # "q4_K -> q5_0": number of tensors
    log_tail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"quant": self.quant, "seconds": round(self.seconds, 2), "fallbacks": self.fallbacks}


def parse_quant_type(value: str) -> str:
    """'q4_k_m' → 'Q4_K_M'; BadRequest naming the offered types for anything else."""
    name = (value or "").strip().upper()
    if name not in QUANT_TYPES:
        raise BadRequest(f"unknown quantization type {value!r}; offered: {', '.join(QUANT_TYPES)}", param="type")
    return name


def default_name(source: str, quant: str) -> str:
    """`smollm2:135m` + Q4_K_M → `smollm2:135m-q4_k_m` (host and namespace kept)."""
    name = parse_model_name(source)
    tag = f"{name.tag}-{quant.lower()}"
    return parse_model_name(name.display.rsplit(":", 1)[0] + ":" + tag).display


def parse_fallbacks(stderr: str) -> dict[str, int]:
    """Count the quantizer's 'required for type q4_K) -> falling back to q5_0' lines."""
    counts: Counter[str] = Counter(f"{want} -> {got}" for want, got in _FALLBACK.findall(stderr))
    return dict(sorted(counts.items()))


def quantize_file(src: Path, dst: Path, quant: str, *, threads: int | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S) -> QuantizeResult:
    """Run llama.cpp's quantizer on `src` in a child process; QuantizeError when it fails."""
    import time

    quant = parse_quant_type(quant)
    nthread = threads if threads and threads > 0 else (os.cpu_count() or 1)
    cmd = [sys.executable, "-m", "flexi.store.quantize_worker", str(src), str(dst), str(QUANT_TYPES[quant]),
           str(nthread)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        Path(dst).unlink(missing_ok=True)
        raise QuantizeError(f"quantizing to {quant} took longer than {timeout:g} s") from None
    lines = [line for line in (proc.stderr or "").splitlines() if line.strip()]
    if proc.returncode != 0 or not Path(dst).is_file():
        Path(dst).unlink(missing_ok=True)
        detail = " | ".join(lines[-3:]) or f"exit status {proc.returncode}"
        raise QuantizeError(f"llama.cpp could not quantize to {quant}: {detail}")
    return QuantizeResult(quant=quant, seconds=time.perf_counter() - started,
                          fallbacks=parse_fallbacks(proc.stderr or ""), log_tail=lines[-5:])


def quantize_model(store: ModelStore, source: str, quant: str, name: str | None = None, *,
                   threads: int | None = None, replace: bool = False,
                   timeout: float = DEFAULT_TIMEOUT_S) -> tuple[ModelRecord, QuantizeResult]:
    """Quantize the installed model `source` and register it as `name` (default `<source>-<type>`)."""
    quant = parse_quant_type(quant)
    record = store.get(source)  # ModelNotFound for an unknown model
    if record.external:
        raise QuantizeError(f"{record.name} is served by a remote backend; there is no local file to quantize")
    target = name or default_name(record.name, quant)
    if _as_name(target) == _as_name(record.name):
        raise QuantizeError("the new name must differ from the source model's name")
    if store.exists(target) and not replace:
        raise QuantizeError(f"model {target} already exists; choose another --name or delete it first")
    store.blobs.dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-quant-", suffix=".gguf", dir=store.blobs.dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        result = quantize_file(record.model_path, tmp, quant, threads=threads, timeout=timeout)
        read_gguf_info(tmp)  # what was written must parse before it enters the store
        created = store.create_from_file(target, tmp, template=record.template, system=record.system,
                                         parameters=record.parameters or None, license=record.license)
    finally:
        tmp.unlink(missing_ok=True)
    return created, result


def tensor_stats(path: Path | str) -> dict[str, Any]:
    """Bits per weight over all tensors (as llama.cpp reports it) and how many tensors have which type."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    elements = sum(int(t.n_elements) for t in reader.tensors)
    nbytes = sum(int(t.n_bytes) for t in reader.tensors)
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return {"bits_per_weight": 8 * nbytes / elements if elements else None, "tensor_bytes": nbytes,
            "parameters": elements, "tensor_types": dict(sorted(types.items(), key=lambda kv: -kv[1]))}
