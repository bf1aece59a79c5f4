"""Convert a Hugging Face BERT directory (safetensors + tokenizer) into a GGUF llama.cpp can run.

What `flexi create` does with `FROM <directory>`, like Ollama's import of safetensors models, and
how the bundled all-MiniLM-L6-v2 becomes Flexi's default embedding model. Needs numpy and the
`gguf` package only (no torch, no transformers): weights are memory-mapped from the safetensors
files, the WordPiece vocabulary is read from tokenizer.json (or vocab.txt).

Written for Flexi after reading llama.cpp's convert_hf_to_gguf.py (`BertModel`, MIT licence,
(c) the ggml authors) for the GGUF keys, tensor names, the "phantom space" vocabulary and which
tensors stay float32; the code here is Flexi's own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from .safetensors import SafetensorsError, iter_tensors

SUPPORTED_ARCHITECTURES = {"BertModel", "BertForMaskedLM"}
GELU = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast"}
_SKIPPED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\..*)$")
_SPECIAL_LOOK = re.compile(r"^\[[A-Z]+\d*\]$|^<\|?[a-z_]+\|?>$")
_POOLING = {"mean": gguf.PoolingType.MEAN, "cls": gguf.PoolingType.CLS, "lasttoken": gguf.PoolingType.LAST}
_FLOAT32_TENSORS = {gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES}


class ConversionError(ValueError):
    """The directory is not a model this converter can turn into GGUF; the message says why."""


@dataclass(frozen=True)
class Converted:
    """What a conversion wrote: for progress messages and the tests."""

    path: Path
    architecture: str
    tensors: int
    parameters: int
    vocab_size: int


def is_model_dir(path: Path) -> bool:
    """A Hugging Face model directory: config.json next to at least one .safetensors file."""
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{path.name} is not readable JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _config(src: Path) -> dict[str, Any]:
    config = _json(src / "config.json")
    archs = set(config.get("architectures") or [])
    if config.get("model_type") != "bert" or not archs & SUPPORTED_ARCHITECTURES:
        raise ConversionError(
            f"only BERT models can be converted so far (config.json: model_type={config.get('model_type')!r}, "
            f"architectures={sorted(archs)}); convert others to GGUF with llama.cpp first")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError("only BERT with absolute position embeddings is supported")
    if config.get("hidden_act", "gelu") not in GELU:
        raise ConversionError(f"activation {config.get('hidden_act')!r} is not supported (llama.cpp's BERT uses GELU)")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        if not isinstance(config.get(key), int) or config[key] <= 0:
            raise ConversionError(f"config.json lacks a positive integer {key}")
    return config


# --- vocabulary -------------------------------------------------------------------------------------
@dataclass
class _Vocab:
    tokens: list[str]
    types: list[int]
    lowercase: bool | None
    strip_accents: bool | None
    special: dict[str, int]  # bos(=cls), sep, unk, pad, mask → id


def _wordpiece(src: Path, vocab_size: int) -> _Vocab:
    """The WordPiece vocabulary, its special tokens and its normaliser settings."""
    tok = _json(src / "tokenizer.json")
    tok_config = _json(src / "tokenizer_config.json")
    by_id: dict[int, str] = {}
    model = tok.get("model") or {}
    if model:
        if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
            raise ConversionError(f"tokenizer.json has a {model.get('type')!r} model; BERT needs WordPiece")
        by_id = {int(i): t for t, i in model["vocab"].items()}
    elif (src / "vocab.txt").is_file():
        by_id = dict(enumerate((src / "vocab.txt").read_text(encoding="utf-8").splitlines()))
    else:
        raise ConversionError("no tokenizer.json or vocab.txt in the model directory")
    added = {int(a["id"]): a for a in tok.get("added_tokens") or [] if isinstance(a, dict) and "id" in a}
    for i, a in added.items():
        by_id[i] = str(a.get("content", by_id.get(i, "")))
    if not by_id or max(by_id) >= vocab_size:
        raise ConversionError(f"the tokenizer has ids beyond config.json's vocab_size {vocab_size}")

    special_map = {**_json(src / "special_tokens_map.json"), **{k: v for k, v in tok_config.items() if k.endswith("_token")}}

    def content(key: str, default: str) -> str:
        value = special_map.get(key, default)
        return str(value.get("content", default)) if isinstance(value, dict) else str(value or default)

    names = {"bos": content("cls_token", "[CLS]"), "sep": content("sep_token", "[SEP]"),
             "unk": content("unk_token", "[UNK]"), "pad": content("pad_token", "[PAD]"),
             "mask": content("mask_token", "[MASK]")}
    ids = {t: i for i, t in by_id.items()}
    special = {key: ids[name] for key, name in names.items() if name in ids}
    control = set(special.values()) | {i for i, a in added.items() if a.get("special")}

    tokens, types = [], []
    for i in range(vocab_size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in control or (i in added and _SPECIAL_LOOK.match(text)):
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL)
        else:
            # llama.cpp's WPM tokenizer expects "phantom space" pieces: a word start gets U+2581,
            # a continuation loses its "##".
            tokens.append(text[2:] if text.startswith("##") else "\u2581" + text)
            types.append(gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL)

    lowercase, strip_accents = _normalizer(tok.get("normalizer"))
    if lowercase is None and "do_lower_case" in tok_config:
        lowercase = bool(tok_config["do_lower_case"])
    if strip_accents is None and isinstance(tok_config.get("strip_accents"), bool):
        strip_accents = tok_config["strip_accents"]
    return _Vocab(tokens, types, lowercase, strip_accents, special)


def _normalizer(spec: Any) -> tuple[bool | None, bool | None]:
    """(lowercase, strip_accents) of a tokenizers normaliser; None where it does not say."""
    if not isinstance(spec, dict):
        return None, None
    kind = spec.get("type")
    if kind == "BertNormalizer":
        lower = spec.get("lowercase")
        accents = spec.get("strip_accents")
        return (bool(lower) if lower is not None else None), (bool(accents) if accents is not None else None)
    if kind == "Lowercase":
        return True, None
    if kind == "StripAccents":
        return None, True
    if kind == "Sequence":
        lower = accents = None
        for part in spec.get("normalizers") or []:
            part_lower, part_accents = _normalizer(part)
            lower = part_lower if part_lower is not None else lower
            accents = part_accents if part_accents is not None else accents
        return lower, accents
    return None, None


def _pooling(src: Path) -> gguf.PoolingType | None:
    """The sentence-transformers pooling (modules.json → <Pooling module>/config.json), if any."""
    modules = src / "modules.json"
    if not modules.is_file():
        return None
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"modules.json is not readable JSON: {exc}") from None
    for module in entries if isinstance(entries, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            pool_dir = (src / str(module.get("path", ""))).resolve()
            if not pool_dir.is_relative_to(src.resolve()):
                raise ConversionError("modules.json points outside the model directory")
            config = _json(pool_dir / "config.json")
            if config.get("pooling_mode_mean_tokens"):
                return gguf.PoolingType.MEAN
            if config.get("pooling_mode_cls_token"):
                return gguf.PoolingType.CLS
            if config.get("pooling_mode_lasttoken"):
                return gguf.PoolingType.LAST
            if config.get("pooling_mode") in _POOLING:
                return _POOLING[config["pooling_mode"]]
            raise ConversionError("only mean, CLS and last-token pooling are supported")
    return None


# --- tensors ----------------------------------------------------------------------------------------
def _hf_name(name: str) -> str | None:
    """The BertModel name of a checkpoint tensor; None for tensors an embedding model does not use."""
    name = name.removeprefix("bert.")
    if name.endswith(".gamma"):
        name = name[: -len(".gamma")] + ".weight"
    elif name.endswith(".beta"):
        name = name[: -len(".beta")] + ".bias"
    return None if _SKIPPED.match(name) else name


def convert_bert(src: Path | str, out: Path | str, *, name: str | None = None, f16: bool = True) -> Converted:
    """Write `src` (a BERT safetensors directory) as a GGUF file at `out`.

    Matrices become float16 (half the size, what llama.cpp's converter writes by default); vectors,
    norms and the position/type embeddings stay float32, as llama.cpp expects. Deterministic: the
    same directory always gives the same bytes, so the blob store deduplicates repeated imports.
    """
    src, out = Path(src), Path(out)
    if not is_model_dir(src):
        raise ConversionError(f"{src} is not a model directory (config.json and *.safetensors)")
    config = _config(src)
    vocab = _wordpiece(src, config["vocab_size"])
    n_layers = config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT]

    writer = gguf.GGUFWriter(out, arch)
    try:
        writer.add_name(name or src.name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(int(config.get("max_position_embeddings", 512)))
        writer.add_embedding_length(config["hidden_size"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(config["num_attention_heads"])
        writer.add_block_count(n_layers)
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        if (pooling := _pooling(src)) is not None:
            writer.add_pooling_type(pooling)

        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.types)
        writer.add_token_type_count(int(config.get("type_vocab_size", 2)))
        for key, token_id in sorted(vocab.special.items()):
            getattr(writer, f"add_{key}_token_id")(token_id)
        writer.add_add_bos_token(True)  # [CLS] … [SEP], as BERT was trained
        writer.add_add_sep_token(True)
        writer.add_add_eos_token(False)
        # llama.cpp (since the BertNormalizer options) lowercases only when told; older gguf packages lack the key names
        if vocab.lowercase is not None:
            writer.add_bool("tokenizer.ggml.normalizer.lowercase", vocab.lowercase)
        if vocab.strip_accents is not None:
            writer.add_bool("tokenizer.ggml.normalizer.strip_accents", vocab.strip_accents)

        count = parameters = 0
        files = sorted(src.glob("*.safetensors"))
        try:
            for raw_name, array in iter_tensors(files):
                hf = _hf_name(raw_name)
                if hf is None:
                    continue
                new = names.get_name(hf, try_suffixes=(".weight", ".bias"))
                if new is None:
                    raise ConversionError(f"tensor {raw_name!r} has no place in llama.cpp's BERT")
                writer.add_tensor(new, _cast(new, array, f16))
                count += 1
                parameters += int(array.size)
        except SafetensorsError as exc:
            raise ConversionError(str(exc)) from None
        if count == 0:
            raise ConversionError("the safetensors files hold no BERT tensors")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        out.unlink(missing_ok=True)
        raise
    writer.close()
    return Converted(out, arch, count, parameters, len(vocab.tokens))


def _cast(gguf_name: str, array: np.ndarray, f16: bool) -> np.ndarray:
    """float16 for weight matrices (when asked), float32 for everything llama.cpp reads as float32."""
    base = gguf_name.removesuffix(".weight").removesuffix(".bias")
    keep_f32 = (not f16 or array.ndim <= 1 or base.endswith("_norm") or not gguf_name.endswith(".weight")
                or any(base == gguf.TENSOR_NAMES[t] for t in _FLOAT32_TENSORS))
    return np.ascontiguousarray(array, dtype=np.float32 if keep_f32 else np.float16)
