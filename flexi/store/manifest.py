"""Ollama-compatible manifests: which blobs make up one model.

A manifest is a small JSON document (Docker image manifest v2 shape, as Ollama
writes it) listing a config blob and layers by digest. Its own sha256 is the
model's `digest` in `/api/tags`, so two names with the same manifest bytes are
the same model (that is what `copy` produces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flexi.engine.types import EngineError

from .blobs import validate_digest

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL = "application/vnd.ollama.image.model"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
PARAMS = "application/vnd.ollama.image.params"
LICENSE = "application/vnd.ollama.image.license"


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @classmethod
    def from_json(cls, data: Any) -> Layer:
        if not isinstance(data, dict) or not isinstance(data.get("mediaType"), str):
            raise ValueError("layer without mediaType")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("layer with a bad size")
        return cls(data["mediaType"], validate_digest(data.get("digest", "")), size)


@dataclass
class Manifest:
    config: Layer
    layers: list[Layer] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        return json.dumps(doc, indent=None, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        """Parse and validate; a corrupt manifest is an EngineError (500), not a crash."""
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
                raise ValueError("not a schemaVersion 2 manifest")
            layers = doc.get("layers")
            if not isinstance(layers, list):
                raise ValueError("layers missing")
            return cls(Layer.from_json(doc.get("config")), [Layer.from_json(item) for item in layers])
        except (ValueError, EngineError) as exc:  # BadRequest from validate_digest is an EngineError
            raise EngineError(f"corrupt model manifest: {exc}", status=500, code="corrupt_manifest") from exc

    def layer(self, media_type: str) -> Layer | None:
        """The last layer of a media type (later layers override earlier ones, as in Ollama)."""
        found = [layer for layer in self.layers if layer.media_type == media_type]
        return found[-1] if found else None

    @property
    def digests(self) -> set[str]:
        return {self.config.digest, *(layer.digest for layer in self.layers)}

    @property
    def total_size(self) -> int:
        """Sum of layer sizes plus the config, as Ollama reports a model's size."""
        return self.config.size + sum(layer.size for layer in self.layers)
