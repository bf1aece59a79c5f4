"""Content-addressed blobs: `<models_dir>/blobs/sha256-<64 hex>`.

A blob's name is its sha256, so identical files are stored once and a blob is
never half-written: bytes go to a temp file in the same directory and are
renamed into place only after the hash matched. Hashing is synchronous; callers
on an event loop run big files through `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from flexi.engine.types import BadRequest

_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")
CHUNK = 1 << 20


def validate_digest(digest: str) -> str:
    """Return the canonical `sha256:<hex>` form; accept `sha256-<hex>` too, nothing else."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if not match:
        raise BadRequest(f"invalid digest {str(digest)[:80]!r}: expected sha256:<64 lowercase hex>", param="digest")
    return f"sha256:{match.group(1)}"


def sha256_file(path: Path) -> str:
    """`sha256:<hex>` of a file, read in chunks (blocking; use a thread for big files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


class BlobWriter:
    """Streams bytes into a temp file while hashing; `commit()` moves it into place.

    The FastAPI blob-upload route feeds it chunk by chunk. A wrong hash removes
    the temp file and raises BadRequest("digest mismatch ...").
    """

    def __init__(self, blobs: BlobStore, expected: str | None = None) -> None:
        self._blobs = blobs
        self.expected = validate_digest(expected) if expected is not None else None
        self._hash = hashlib.sha256()
        self.size = 0
        blobs.dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=blobs.dir)
        self._tmp = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise RuntimeError("blob writer already closed")
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self) -> str:
        """Check the hash and rename into place; returns the `sha256:` digest."""
        if self._file is None:
            raise RuntimeError("blob writer already closed")
        self._file.close()
        self._file = None
        digest = f"sha256:{self._hash.hexdigest()}"
        if self.expected is not None and digest != self.expected:
            self._tmp.unlink(missing_ok=True)
            raise BadRequest(f"digest mismatch: expected {self.expected}, got {digest}", param="digest")
        self._blobs.adopt(self._tmp, digest)
        return digest

    def abort(self) -> None:
        """Drop the temp file (safe to call more than once)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or self._file is not None:
            self.abort()


class BlobStore:
    """The `blobs/` directory of a model store."""

    def __init__(self, models_dir: Path | str) -> None:
        self.dir = Path(models_dir).resolve() / "blobs"

    def blob_path(self, digest: str) -> Path:
        return self.dir / validate_digest(digest).replace(":", "-", 1)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.blob_path(digest).stat().st_size

    def writer(self, expected: str | None = None) -> BlobWriter:
        return BlobWriter(self, expected)

    def write_bytes(self, data: bytes) -> str:
        """Store a small blob (config, template, params); returns its digest."""
        with self.writer() as w:
            w.write(data)
            return w.commit()

    def read_bytes(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def adopt(self, tmp: Path, digest: str) -> Path:
        """Rename an already verified file from inside `blobs/` to its digest name."""
        target = self.blob_path(digest)
        if Path(tmp).resolve().parent != self.dir:
            raise ValueError(f"{tmp} is not inside {self.dir}")
        if target.is_file():
            Path(tmp).unlink(missing_ok=True)  # same content is already stored
        else:
            os.replace(tmp, target)
        return target

    def import_file(self, path: Path | str) -> str:
        """Add an existing file; hard-link when possible (no copy of GBs), else copy. Returns its digest."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-import-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            try:
                os.link(path, tmp)
                digest = sha256_file(tmp)
            except OSError:  # other file system, or linking forbidden: copy while hashing
                h = hashlib.sha256()
                with open(path, "rb") as src, open(tmp, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        dst.write(chunk)
                digest = f"sha256:{h.hexdigest()}"
            self.adopt(tmp, digest)
            return digest
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, digest: str) -> None:
        self.blob_path(digest).unlink(missing_ok=True)

    def partial_path(self, key: str) -> Path:
        """Where a resumable download for `key` (a digest or a hex id) is kept."""
        return self.dir / f"sha256-{validate_digest('sha256:' + key.removeprefix('sha256:'))[7:]}-partial"

    def clean_temp(self) -> None:
        """Remove leftover temp files of crashed writers (call at startup only)."""
        for tmp in self.dir.glob(".tmp-*"):
            tmp.unlink(missing_ok=True)

