"""Read .safetensors files with numpy alone (no torch, no extra package).

The format is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw little-endian data. Tensors
are memory-mapped, so converting a model never holds two copies in memory.
BF16 (common in newer checkpoints, unknown to numpy) is widened to float32.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's own limit

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}


class SafetensorsError(ValueError):
    """The file is not a readable safetensors file."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offsets in the file
    end: int


def read_header(path: Path) -> list[TensorEntry]:
    """The tensors of one file, checked: known dtypes, byte ranges that match shapes and fit the file."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path.name}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or 8 + n > size:
            raise SafetensorsError(f"{path.name}: header length {n} is not plausible")
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            raise SafetensorsError(f"{path.name}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path.name}: header is not an object")
    base = 8 + n
    entries = []
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = spec["dtype"], tuple(int(d) for d in spec["shape"]), spec["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path.name}: bad entry for tensor {name!r}") from None
        if dtype not in _DTYPES:
            raise SafetensorsError(f"{path.name}: tensor {name!r} has unsupported dtype {dtype}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end and base + end <= size and end - begin == count * _DTYPES[dtype].itemsize):
            raise SafetensorsError(f"{path.name}: tensor {name!r} has a bad byte range")
        entries.append(TensorEntry(name, dtype, shape, base + begin, base + end))
    return entries


def load_tensor(path: Path, entry: TensorEntry) -> np.ndarray:
    """One tensor as a read-only array (memory-mapped; BF16 becomes float32)."""
    dt = _DTYPES[entry.dtype]
    count = (entry.end - entry.start) // dt.itemsize
    data = np.memmap(path, dtype=dt, mode="r", offset=entry.start, shape=(count,)) if count else np.zeros(0, dt)
    if entry.dtype == "BF16":
        data = (data.astype(np.uint32) << 16).view(np.float32)
    return data.reshape(entry.shape)


def iter_tensors(paths: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) for every tensor of a (possibly sharded) model, in file order."""
    seen: set[str] = set()
    for path in paths:
        for entry in read_header(path):
            if entry.name in seen:
                raise SafetensorsError(f"tensor {entry.name!r} appears twice")
            seen.add(entry.name)
            yield entry.name, load_tensor(path, entry)
