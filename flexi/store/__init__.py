"""Ollama-like model store: names, content-addressed blobs, manifests, GGUF metadata, pull."""

from .blobs import BlobStore, BlobWriter, validate_digest
from .bundled import DEFAULT_EMBED_MODEL_NAME, default_embed_zip
from .gguf_meta import GGUFInfo, InvalidModelFile, read_gguf_info
from .names import InvalidModelName, ModelName, parse_model_name
from .pull import pull_model
from .store import DEFAULT_MODEL_NAME, ModelRecord, ModelStore, default_model_file

__all__ = [
    "DEFAULT_EMBED_MODEL_NAME",
    "DEFAULT_MODEL_NAME",
    "BlobStore",
    "BlobWriter",
    "GGUFInfo",
    "InvalidModelFile",
    "InvalidModelName",
    "ModelName",
    "ModelRecord",
    "ModelStore",
    "default_embed_zip",
    "default_model_file",
    "parse_model_name",
    "pull_model",
    "read_gguf_info",
    "validate_digest",
]
