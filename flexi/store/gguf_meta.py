"""What a GGUF file says about its model, read safely and fast.

Files come from users and the internet, so nothing in them is trusted: the
24-byte header is checked before anything else, every length is checked against
the bytes actually left in the file, and nothing is allocated from a size the
file claims. Any failure is an `InvalidModelFile` (HTTP 400), never a crash or a
huge allocation.

We parse with a small bounded reader instead of `gguf.GGUFReader`: the
reference reader materialises every tokenizer string (1.6 s for SmolLM2's
49k-token vocabulary), while skipping big arrays takes ~30 ms. It reads the
metadata into memory (growing the read until it fits, at most
MAX_METADATA_BYTES) rather than memory-mapping, so a file truncated while we
read it cannot kill the server with SIGBUS; tensor bounds are checked against
the file size. The `gguf` package still supplies the enums and quant block
sizes, and a test cross-checks this reader against `GGUFReader`.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import gguf

from flexi.engine.types import BadRequest

MAGIC = b"GGUF"
HEADER_SIZE = 24
MAX_TENSORS = 100_000
MAX_KV = 100_000
SHORT_ARRAY = 256  # longer arrays are skipped, like Ollama hides tokenizer arrays in /api/show
MAX_INFO_STRING = 4096
MAX_METADATA_BYTES = 128 * 1024 * 1024  # tokenizers of the biggest vocabularies need ~20 MB
FIRST_READ = 4 * 1024 * 1024
_MIN_KV_BYTES = 13  # key length u64 + 1 byte of key + value type u32
_MIN_TENSOR_BYTES = 24  # name length u64 + n_dims u32 + type u32 + offset u64

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_HIDDEN_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                "tokenizer.ggml.scores", "tokenizer.ggml.precompiled_charsmap", "tokenizer.chat_template",
                "tokenizer.huggingface.json")
EMBEDDING_ARCHS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3",
                             "modern-bert", "neo-bert", "t5encoder"})


class InvalidModelFile(BadRequest):
    """The file is not a GGUF model we can use."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a valid GGUF file: {reason}", param="model")
        self.reason = reason


@dataclass
class GGUFInfo:
    """The facts `list`/`show`/the scheduler need, cached in the model's config blob."""

    architecture: str
    name: str | None = None
    parameter_count: int = 0
    parameter_size: str = ""
    file_type: int | None = None
    quantization_level: str = "unknown"
    context_length: int | None = None
    embedding_length: int | None = None
    block_count: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    vocab_size: int | None = None  # sizes the logits buffers in the scheduler's memory estimate
    chat_template: str | None = None
    pooling_type: int | None = None
    license: str | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    model_info: dict[str, Any] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GGUFInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class _Skipped:
    """Stands in for an array too long to keep."""

    def __init__(self, count: int) -> None:
        self.count = count


class MetadataIncomplete(Exception):
    """The buffer holds only the start of the file and the metadata goes on (read more and try again)."""


_NeedMore = MetadataIncomplete


class _Cursor:
    """Bounded little-endian reads over a buffer; running past the file's end is InvalidModelFile."""

    def __init__(self, buf: bytes, pos: int, complete: bool) -> None:
        self.buf, self.pos, self.end, self.complete = buf, pos, len(buf), complete

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            if not self.complete:
                raise _NeedMore
            raise InvalidModelFile(f"truncated or corrupt while reading {what} at byte {self.pos}")

    def scalar(self, fmt: str, what: str) -> Any:
        size = struct.calcsize("<" + fmt)
        self.need(size, what)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, what: str, keep: bool = True) -> str | None:
        n = self.scalar("Q", what)
        self.need(n, what)
        raw = self.buf[self.pos:self.pos + n] if keep else None
        self.pos += n
        return raw.decode("utf-8", errors="replace") if raw is not None else None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALAR:
            return self.scalar(_SCALAR[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY and depth < 3:
            return self.array(what, depth)
        raise InvalidModelFile(f"unknown value type {vtype} in {what}")

    def array(self, what: str, depth: int) -> Any:
        etype = self.scalar("I", what)
        count = self.scalar("Q", what)
        keep = count <= SHORT_ARRAY
        if etype in _SCALAR:
            size = struct.calcsize("<" + _SCALAR[etype])
            self.need(count * size, what)
            if not keep:
                self.pos += count * size
                return _Skipped(count)
            values = list(struct.unpack_from(f"<{count}{_SCALAR[etype]}", self.buf, self.pos))
            self.pos += count * size
            return values
        if etype == _STRING:
            self.need(count * 8, what)  # every string has at least its 8-byte length
            values = [self.string(what, keep) for _ in range(count)]
            return values if keep else _Skipped(count)
        if etype == _ARRAY and depth < 2:
            self.need(count * 12, what)
            values = [self.array(what, depth + 1) for _ in range(count)]
            return values if keep else _Skipped(count)
        raise InvalidModelFile(f"unknown array element type {etype} in {what}")


def check_gguf_header(path: Path | str) -> tuple[int, int, int]:
    """Cheap sanity check of the fixed header; returns (version, tensor_count, kv_count)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
    except OSError as exc:
        raise InvalidModelFile(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    return check_header_bytes(head, size)


def check_header_bytes(head: bytes, size: int) -> tuple[int, int, int]:
    """The header check on bytes already read (a local file's start or a ranged download's)."""
    if size < HEADER_SIZE or len(head) < HEADER_SIZE:
        raise InvalidModelFile(f"file is only {size} bytes")
    if head[:4] != MAGIC:
        raise InvalidModelFile(f"bad magic {head[:4]!r} (expected b'GGUF')")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", head, 4)
    if version not in (2, 3):
        raise InvalidModelFile(f"unsupported GGUF version {version} (only 2 and 3, little-endian)")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise InvalidModelFile(f"implausible header: {n_tensors} tensors, {n_kv} metadata entries")
    if HEADER_SIZE + n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_BYTES > size:
        raise InvalidModelFile(f"header claims {n_tensors} tensors and {n_kv} metadata entries, "
                               f"more than a {size}-byte file can hold")
    return version, n_tensors, n_kv


def _parse(buf: bytes, file_size: int, n_tensors: int, n_kv: int) -> tuple[dict[str, Any], int]:
    """Read all metadata and tensor infos; returns (kv, total parameter count)."""
    cur = _Cursor(buf, HEADER_SIZE, complete=len(buf) >= file_size)
    kv: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}") or ""
        kv[key] = cur.value(cur.scalar("I", key), f"metadata {key!r}")
    infos = []
    for i in range(n_tensors):
        name = cur.string(f"tensor info #{i}") or ""
        n_dims = cur.scalar("I", name)
        if n_dims > 8:
            raise InvalidModelFile(f"tensor {name!r} has {n_dims} dimensions")
        n_elements = math.prod(cur.scalar("Q", name) for _ in range(n_dims))
        infos.append((name, n_elements, cur.scalar("I", name), cur.scalar("Q", name)))
    alignment = kv.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise InvalidModelFile(f"bad general.alignment {alignment!r}")
    data_start = -(-cur.pos // alignment) * alignment
    for name, n_elements, ttype, offset in infos:
        try:
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            continue  # a type newer than our gguf package; llama.cpp will judge it
        if n_elements % block:
            raise InvalidModelFile(f"tensor {name!r} has {n_elements} elements, not a multiple of {block}")
        if data_start + offset + n_elements // block * type_size > file_size:
            raise InvalidModelFile(f"tensor {name!r} lies beyond the end of the file (truncated download?)")
    return kv, sum(n for _, n, _, _ in infos)


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber: 134515008 -> '134.52M', 8030261248 -> '8.0B'."""
    for unit, scale, digits in (("B", 10**9, 1), ("M", 10**6, 2)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == math.floor(value) else f"{value:.{digits}f}{unit}"
    return f"{n / 1000:.0f}K" if n >= 1000 else str(n)


def file_type_name(file_type: int | None) -> str:
    """`general.file_type` as Ollama names it: 3 -> 'Q4_1', 15 -> 'Q4_K_M', 1 -> 'F16'."""
    if file_type is None:
        return "unknown"
    try:
        name = gguf.LlamaFileType(file_type).name
    except ValueError:
        return "unknown"
    return "unknown" if name == "GUESSED" else name.removeprefix("MOSTLY_").removeprefix("ALL_")


def capabilities(arch: str, kv: dict[str, Any], template: str | None) -> list[str]:
    """Ollama-style capabilities from architecture, metadata and chat template."""
    pooling = kv.get(f"{arch}.pooling_type")
    embedding_only = (arch in EMBEDDING_ARCHS or kv.get(f"{arch}.attention.causal") is False
                      or (isinstance(pooling, int) and pooling > 0))
    caps = ["embedding"] if embedding_only else ["completion"]
    tpl = template or ""
    if not embedding_only and "tools" in tpl:
        caps.append("tools")
    fim = any(k in kv for k in ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"))
    if not embedding_only and ("suffix" in tpl or fim):
        caps.append("insert")
    if not embedding_only and any(m in tpl for m in ("<think>", "enable_thinking", "reasoning_content")):
        caps.append("thinking")
    return caps


def _info_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_info_value(v) for v in value]
    return value


def _model_info(kv: dict[str, Any], parameter_count: int) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for key, value in kv.items():
        if key in _HIDDEN_KEYS or key.startswith("tokenizer.chat_template.") or isinstance(value, _Skipped):
            continue
        if isinstance(value, str) and len(value) > MAX_INFO_STRING:
            continue
        info[key] = _info_value(value)
    info.setdefault("general.parameter_count", parameter_count)
    return info


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _read_metadata(path: Path, n_tensors: int, n_kv: int) -> tuple[dict[str, Any], int]:
    """Parse from a prefix of the file, reading more only while the metadata goes on."""
    want = FIRST_READ
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            while True:
                f.seek(0)
                buf = f.read(min(want, file_size))
                try:
                    return _parse(buf, file_size, n_tensors, n_kv)
                except _NeedMore:
                    if want >= MAX_METADATA_BYTES:
                        raise InvalidModelFile(f"metadata larger than {MAX_METADATA_BYTES >> 20} MB") from None
                    want = min(want * 4, MAX_METADATA_BYTES)
    except InvalidModelFile:
        raise
    except (OSError, ValueError, OverflowError, struct.error, MemoryError) as exc:
        raise InvalidModelFile(f"cannot parse: {exc}") from exc


def _vocab_size(kv: dict[str, Any], arch: str) -> int | None:
    tokens = kv.get("tokenizer.ggml.tokens")
    if isinstance(tokens, _Skipped):
        return tokens.count
    if isinstance(tokens, list):
        return len(tokens)
    return _int(kv.get(f"{arch}.vocab_size"))


def read_gguf_info(path: Path | str) -> GGUFInfo:
    """Validate a GGUF file and summarise it; raises InvalidModelFile on anything odd."""
    _, n_tensors, n_kv = check_gguf_header(path)
    kv, tensor_params = _read_metadata(Path(path), n_tensors, n_kv)
    return _summary(kv, tensor_params)


def info_from_prefix(buf: bytes, file_size: int) -> GGUFInfo:
    """Summarise a GGUF file from its first bytes (e.g. a ranged download of a model not yet pulled).

    Raises MetadataIncomplete while `buf` ends inside the metadata (fetch more and call again), and
    InvalidModelFile on anything odd; the tensor bounds are checked against `file_size`.
    """
    _, n_tensors, n_kv = check_header_bytes(buf[:HEADER_SIZE], file_size)
    try:
        kv, tensor_params = _parse(buf, file_size, n_tensors, n_kv)
    except (InvalidModelFile, MetadataIncomplete):
        raise
    except (ValueError, OverflowError, struct.error, MemoryError) as exc:
        raise InvalidModelFile(f"cannot parse: {exc}") from exc
    return _summary(kv, tensor_params)


def _summary(kv: dict[str, Any], tensor_params: int) -> GGUFInfo:
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidModelFile("general.architecture is missing")
    params = _int(kv.get("general.parameter_count")) or tensor_params
    template = _str(kv.get("tokenizer.chat_template"))
    file_type = _int(kv.get("general.file_type"))
    return GGUFInfo(
        architecture=arch,
        name=_str(kv.get("general.name")),
        parameter_count=params,
        parameter_size=human_number(params),
        file_type=file_type,
        quantization_level=file_type_name(file_type),
        context_length=_int(kv.get(f"{arch}.context_length")),
        embedding_length=_int(kv.get(f"{arch}.embedding_length")),
        block_count=_int(kv.get(f"{arch}.block_count")),
        head_count=_int(kv.get(f"{arch}.attention.head_count")),
        head_count_kv=_int(kv.get(f"{arch}.attention.head_count_kv")),
        vocab_size=_vocab_size(kv, arch),
        chat_template=template,
        pooling_type=_int(kv.get(f"{arch}.pooling_type")),
        license=_str(kv.get("general.license")),
        bos_token_id=_int(kv.get("tokenizer.ggml.bos_token_id")),
        eos_token_id=_int(kv.get("tokenizer.ggml.eos_token_id")),
        model_info=_model_info(kv, params),
        capabilities=capabilities(arch, kv, template),
    )
