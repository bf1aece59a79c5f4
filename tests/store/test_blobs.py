"""Content-addressed blobs: digests validated, writes verified and atomic."""

import hashlib
import os
from pathlib import Path

import pytest

from flexi.engine.types import BadRequest
from flexi.store.blobs import BlobStore, sha256_file, validate_digest

HEX = "a" * 64


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("good", [f"sha256:{HEX}", f"sha256-{HEX}"])
def test_validate_digest_accepts(good: str) -> None:
    assert validate_digest(good) == f"sha256:{HEX}"


@pytest.mark.parametrize(
    "bad",
    ["", HEX, f"sha256:{HEX[:-1]}", f"sha256:{HEX}0", f"sha256:{'A' * 64}", f"sha512:{HEX}", f"sha256:{'g' * 64}",
     f"sha256:../{HEX[3:]}", f"sha256:{HEX}\n", f" sha256:{HEX}", f"sha256:{HEX}/../../x", None, 42],
)
def test_validate_digest_rejects(bad: object) -> None:
    with pytest.raises(BadRequest, match="invalid digest"):
        validate_digest(bad)  # type: ignore[arg-type]


def test_blob_path_layout(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    assert blobs.blob_path(f"sha256:{HEX}") == tmp_path.resolve() / "blobs" / f"sha256-{HEX}"
    with pytest.raises(BadRequest):
        blobs.blob_path("sha256:../../etc/passwd")


def test_writer_streams_and_commits(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)
    with blobs.writer(digest_of(data)) as w:
        for i in range(0, len(data), 65536):
            w.write(data[i:i + 65536])
        digest = w.commit()
    assert digest == digest_of(data)
    assert blobs.has_blob(digest)
    assert blobs.read_bytes(digest) == data
    assert blobs.size(digest) == len(data)
    assert tree(tmp_path) == {"blobs", f"blobs/sha256-{digest[7:]}"}  # no temp files left


def test_writer_digest_mismatch_removes_temp(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    wrong = digest_of(b"other")
    with pytest.raises(BadRequest, match="digest mismatch"):
        with blobs.writer(wrong) as w:
            w.write(b"payload")
            w.commit()
    assert not blobs.has_blob(wrong)
    assert not blobs.has_blob(digest_of(b"payload"))
    assert list((tmp_path / "blobs").iterdir()) == []


def test_writer_aborted_on_exception(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    with pytest.raises(RuntimeError):
        with blobs.writer() as w:
            w.write(b"half")
            raise RuntimeError("client went away")
    assert list((tmp_path / "blobs").iterdir()) == []


def test_writer_rejects_bad_expected_digest(tmp_path: Path) -> None:
    with pytest.raises(BadRequest):
        BlobStore(tmp_path).writer("sha256:nothex")


def test_write_bytes_is_idempotent(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    d1 = blobs.write_bytes(b"{}")
    d2 = blobs.write_bytes(b"{}")
    assert d1 == d2 == digest_of(b"{}")
    assert len(list((tmp_path / "blobs").iterdir())) == 1


def test_import_file_hard_links_when_possible(tmp_path: Path) -> None:
    src = tmp_path / "model.gguf"
    src.write_bytes(b"GGUF" + os.urandom(1000))
    blobs = BlobStore(tmp_path / "models")
    digest = blobs.import_file(src)
    assert digest == sha256_file(src) == digest_of(src.read_bytes())
    assert os.path.samefile(blobs.blob_path(digest), src)
    assert blobs.import_file(src) == digest  # second import: nothing new
    assert tree(tmp_path / "models") == {"blobs", f"blobs/sha256-{digest[7:]}"}


def test_import_file_copies_when_link_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "model.gguf"
    src.write_bytes(os.urandom(2 * 1024 * 1024 + 5))

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    blobs = BlobStore(tmp_path / "models")
    digest = blobs.import_file(src)
    path = blobs.blob_path(digest)
    assert not os.path.samefile(path, src)
    assert path.read_bytes() == src.read_bytes()
    assert tree(tmp_path / "models") == {"blobs", f"blobs/sha256-{digest[7:]}"}


def test_import_missing_file_leaves_nothing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    with pytest.raises(OSError):
        blobs.import_file(tmp_path / "nope.gguf")
    assert list((tmp_path / "blobs").iterdir()) == []


def test_delete_and_partial_path(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    digest = blobs.write_bytes(b"x")
    blobs.delete(digest)
    assert not blobs.has_blob(digest)
    blobs.delete(digest)  # deleting twice is fine
    assert blobs.partial_path(HEX) == tmp_path.resolve() / "blobs" / f"sha256-{HEX}-partial"
    with pytest.raises(BadRequest):
        blobs.partial_path("../../x")
