"""Pulling models over real HTTP: progress, resume, verification, HF quant choice."""

import fcntl
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gguf
import numpy as np
import pytest

from flexi.engine.types import BadRequest, EngineError
from flexi.store import pull as pull_mod
from flexi.store.gguf_meta import InvalidModelFile
from flexi.store.hf import choose_gguf
from flexi.store.netguard import HostPolicy
from flexi.store.pull import pull_model, url_source
from flexi.store.store import ModelStore
from tests.http_helpers import QuietHandler

LOCAL = SimpleNamespace(pull_allow_hosts=["127.0.0.1"])  # the test servers are on loopback, which pulls refuse by default


def make_gguf(tmp: Path, seed: int, rows: int = 256) -> bytes:
    """A valid GGUF of about rows KiB, different content per seed."""
    path = tmp / f"gen-{seed}-{rows}.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(512)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tensor("tok_embd.weight", np.random.default_rng(seed).random((rows, 256), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = path.read_bytes()
    path.unlink()
    return data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cut_once: dict[str, int] = field(default_factory=dict)  # path -> bytes to send before dropping the connection
    ignore_range: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class Handler(QuietHandler):
    server: "StateServer"

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        range_header = self.headers.get("Range")
        state.requests.append((path, range_header))
        if path.startswith("/api/models/") and path.endswith("/tree/main"):
            repo = path[len("/api/models/"):-len("/tree/main")]
            if repo not in state.trees:
                return self._send(404, b'{"error":"Repository not found"}')
            return self._send(200, json.dumps(state.trees[repo]).encode(), {"Content-Type": "application/json"})
        data = state.files.get(path)
        if data is None:
            return self._send(404, b"not found")
        start = 0
        if range_header and path not in state.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        cut = state.cut_once.pop(path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class StateServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    srv = StateServer(state)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", state
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    @property
    def statuses(self) -> list[str]:
        out: list[str] = []
        for e in self.events:
            if not out or out[-1] != e["status"]:
                out.append(e["status"])
        return out


def files_in(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# --- plain URLs ---------------------------------------------------------

async def test_fresh_download_with_progress(server: tuple[str, ServerState], store: ModelStore, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    base, state = server
    data = make_gguf(tmp_path, 1, rows=1024)  # ~1 MiB
    state.files["/dl/Tiny-Model.Q8_0.gguf"] = data
    monkeypatch.setattr(pull_mod, "PROGRESS_INTERVAL", 0.0)
    rec = Recorder()
    record = await pull_model(store, f"{base}/dl/Tiny-Model.Q8_0.gguf#sha256={sha(data)}", LOCAL,
                              progress=rec)
    assert rec.statuses == ["pulling manifest", f"pulling {sha(data)[:12]}", "verifying sha256 digest",
                            "writing manifest", "success"]
    pulling = [e for e in rec.events if e["status"].startswith("pulling ") and e["status"] != "pulling manifest"]
    assert len(pulling) >= 3
    assert all(e["digest"] == f"sha256:{sha(data)}" and e["total"] == len(data) for e in pulling)
    completed = [e["completed"] for e in pulling]
    assert completed[0] == 0 and completed[-1] == len(data) and completed == sorted(completed)
    assert record.name == "tiny-model.q8_0:latest"
    assert record.model_path.read_bytes() == data
    assert store.get("tiny-model.q8_0").info.context_length == 512
    manifest = "manifests/local/library/tiny-model.q8_0/latest"
    assert manifest in files_in(tmp_path / "models")
    assert all(f == manifest or f.startswith("blobs/sha256-") for f in files_in(tmp_path / "models"))
    assert not list(store.blobs.dir.glob("*-partial"))
    assert not any(p.name.startswith(".tmp") for p in store.blobs.dir.iterdir())
    assert {p.name for p in tmp_path.iterdir()} == {"models"}  # nothing written outside the store


async def test_download_without_hash_and_custom_name(server: tuple[str, ServerState], store: ModelStore,
                                                     tmp_path: Path) -> None:
    base, state = server
    data = make_gguf(tmp_path, 2)
    state.files["/weird name (1).gguf"] = data
    rec = Recorder()
    record = await pull_model(store, f"{base}/weird%20name%20(1).gguf", LOCAL, progress=rec)
    assert record.name == "weird-name-1-:latest"
    assert record.model_path.name == f"sha256-{sha(data)}"
    assert "pulling weird name (1).gguf" in rec.statuses
    other = await pull_model(store, f"{base}/weird%20name%20(1).gguf", LOCAL, as_name="team/mine:v1")
    assert other.name == "team/mine:v1" and other.model_path == record.model_path


async def test_resume_after_dropped_connection(server: tuple[str, ServerState], store: ModelStore,
                                               tmp_path: Path) -> None:
    base, state = server
    data = make_gguf(tmp_path, 3, rows=1024)
    state.files["/m.gguf"] = data
    state.cut_once["/m.gguf"] = 300_000
    url = f"{base}/m.gguf#sha256={sha(data)}"
    with pytest.raises(EngineError) as info:
        await pull_model(store, url, LOCAL)
    assert info.value.status == 502 and "pull again to resume" in info.value.message
    partial = store.blobs.partial_path(sha(data))
    have = partial.stat().st_size
    assert 0 < have <= 300_000
    assert store.list() == []

    rec = Recorder()
    record = await pull_model(store, url, LOCAL, progress=rec)
    assert state.requests[-1] == ("/m.gguf", f"bytes={have}-")
    first = next(e for e in rec.events if "completed" in e)
    assert first["completed"] == have and first["total"] == len(data)
    assert record.model_path.read_bytes() == data
    assert not partial.exists()


async def test_restart_when_server_ignores_range(server: tuple[str, ServerState], store: ModelStore,
                                                 tmp_path: Path) -> None:
    base, state = server
    data = make_gguf(tmp_path, 4)
    state.files["/m.gguf"] = data
    state.ignore_range.add("/m.gguf")
    partial = store.blobs.partial_path(sha(data))
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"garbage that must not survive" * 100)
    record = await pull_model(store, f"{base}/m.gguf#sha256={sha(data)}", LOCAL)
    assert state.requests[-1][1] is not None  # we asked for a range ...
    assert record.model_path.read_bytes() == data  # ... got 200 and started over


async def test_416_restarts(server: tuple[str, ServerState], store: ModelStore, tmp_path: Path) -> None:
    base, state = server
    data = make_gguf(tmp_path, 5)
    state.files["/m.gguf"] = data
    url = f"{base}/m.gguf"
    partial = store.blobs.partial_path(hashlib.sha256(url.encode()).hexdigest())
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * (len(data) + 10))  # longer than the remote file
    record = await pull_model(store, url, LOCAL)
    assert record.model_path.read_bytes() == data


async def test_sha256_mismatch_registers_nothing(server: tuple[str, ServerState], store: ModelStore,
                                                 tmp_path: Path) -> None:
    base, state = server
    state.files["/m.gguf"] = make_gguf(tmp_path, 6)
    wrong = "0" * 64
    rec = Recorder()
    with pytest.raises(EngineError, match="sha256 mismatch") as info:
        await pull_model(store, f"{base}/m.gguf#sha256={wrong}", LOCAL, progress=rec)
    assert info.value.status == 400
    assert "success" not in rec.statuses and "writing manifest" not in rec.statuses
    assert store.list() == []
    assert list(store.blobs.dir.iterdir()) == []  # partial removed, no blob


async def test_not_a_gguf_registers_nothing(server: tuple[str, ServerState], store: ModelStore) -> None:
    base, state = server
    state.files["/fake.gguf"] = b"<html>this is a login page, not a model</html>"
    with pytest.raises(InvalidModelFile):
        await pull_model(store, f"{base}/fake.gguf", LOCAL)
    assert store.list() == []
    assert list(store.blobs.dir.iterdir()) == []


async def test_http_errors(server: tuple[str, ServerState], store: ModelStore) -> None:
    base, _ = server
    with pytest.raises(EngineError) as info:  # the upstream status is logged, not told (pulls are no port scanner)
        await pull_model(store, f"{base}/missing.gguf", LOCAL)
    assert info.value.status == 502 and "failed" in info.value.message and "404" not in info.value.message
    with pytest.raises(EngineError) as info:
        await pull_model(store, "http://127.0.0.1:9/nothing-listens-here.gguf", LOCAL)
    assert info.value.status == 502 and "failed" in info.value.message and "Connect" not in info.value.message


async def test_concurrent_pull_of_same_file_is_refused(server: tuple[str, ServerState], store: ModelStore,
                                                       tmp_path: Path) -> None:
    base, state = server
    data = make_gguf(tmp_path, 7)
    state.files["/m.gguf"] = data
    partial = store.blobs.partial_path(sha(data))
    partial.parent.mkdir(parents=True)
    with open(partial, "ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(EngineError) as info:
            await pull_model(store, f"{base}/m.gguf#sha256={sha(data)}", LOCAL)
        assert info.value.status == 409
    assert (await pull_model(store, f"{base}/m.gguf#sha256={sha(data)}", LOCAL)).model_path.read_bytes() == data


def test_url_rules() -> None:
    with pytest.raises(BadRequest, match="plain http"):
        url_source("http://example.com/m.gguf")
    assert url_source("http://example.com/m.gguf", insecure=True).allow_http
    with pytest.raises(BadRequest, match="FLEXI_PULL_ALLOW_HOSTS"):  # loopback is no longer trusted by itself
        url_source("http://localhost:8080/m.gguf")
    local = HostPolicy.from_entries(["localhost", "::1"])
    assert url_source("http://localhost:8080/m.gguf", policy=local).allow_http
    assert url_source("http://[::1]:8080/m.gguf", policy=local).allow_http
    src = url_source("https://example.com/a/SmolLM2.Q4_1.gguf#sha256=" + "AB" * 32)
    assert src.expected == "sha256:" + "ab" * 32 and src.url == "https://example.com/a/SmolLM2.Q4_1.gguf"
    assert src.name.display == "smollm2.q4_1:latest"
    with pytest.raises(BadRequest):
        url_source("https://example.com/m.gguf#sha256=abc")
    with pytest.raises(BadRequest):
        url_source("https://example.com/m.gguf#md5=" + "a" * 32)
    with pytest.raises(BadRequest):
        url_source("https://example.com/m.gguf", as_name="../../etc")
    assert url_source("https://example.com/..%2F..%2Fetc.gguf").name.display == "etc:latest"


async def test_plain_names(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="hf.co"):
        await pull_model(store, "llama3.2", LOCAL)
    with pytest.raises(BadRequest, match="invalid model name"):
        await pull_model(store, "../etc/passwd", LOCAL)
    (tmp_path / "m.gguf").write_bytes(make_gguf(tmp_path, 8))
    store.create_from_file("mine", tmp_path / "m.gguf")
    rec = Recorder()
    assert (await pull_model(store, "mine", LOCAL, progress=rec)).name == "mine:latest"
    assert rec.statuses[-1] == "success"


# --- Hugging Face -------------------------------------------------------

def hf_repo(state: ServerState, repo: str, files: dict[str, bytes], extra: list[dict[str, Any]] | None = None,
            oids: dict[str, str] | None = None) -> None:
    tree: list[dict[str, Any]] = [{"type": "file", "path": "README.md", "size": 10}]
    for path, data in files.items():
        state.files[f"/{repo}/resolve/main/{path}"] = data
        oid = (oids or {}).get(path, sha(data))
        tree.append({"type": "file", "path": path, "size": len(data), "lfs": {"oid": oid, "size": len(data)}})
    state.trees[repo] = tree + (extra or [])


async def test_hf_quant_selection(server: tuple[str, ServerState], store: ModelStore, tmp_path: Path) -> None:
    base, state = server
    q4, q8, mmproj = make_gguf(tmp_path, 10), make_gguf(tmp_path, 11), make_gguf(tmp_path, 12)
    hf_repo(state, "TheOrg/Tiny-GGUF", {"Tiny-Q4_K_M.gguf": q4, "Tiny-Q8_0.gguf": q8, "mmproj-Tiny-Q8_0.gguf": mmproj},
            extra=[{"type": "directory", "path": "Q8_0"}])
    settings = SimpleNamespace(hf_endpoint=base + "/")
    rec = Recorder()
    record = await pull_model(store, "hf.co/TheOrg/Tiny-GGUF:q8_0", settings, progress=rec)
    assert record.model_path.read_bytes() == q8
    assert record.name == "hf.co/theorg/tiny-gguf:q8_0"
    assert ("/TheOrg/Tiny-GGUF/resolve/main/Tiny-Q8_0.gguf", None) in state.requests
    assert rec.statuses == ["pulling manifest", f"pulling {sha(q8)[:12]}", "verifying sha256 digest",
                            "writing manifest", "success"]

    latest = await pull_model(store, "huggingface.co/TheOrg/Tiny-GGUF", settings)
    assert latest.model_path.read_bytes() == q4 and latest.name == "huggingface.co/theorg/tiny-gguf:latest"

    # already have the blob: no second download
    before = len(state.requests)
    again = await pull_model(store, "hf.co/TheOrg/Tiny-GGUF:Q8_0", settings)
    assert again.model_path == record.model_path
    assert [p for p, _ in state.requests[before:]] == ["/api/models/TheOrg/Tiny-GGUF/tree/main"]


async def test_hf_unknown_quant_lists_available(server: tuple[str, ServerState], store: ModelStore,
                                                tmp_path: Path) -> None:
    base, state = server
    hf_repo(state, "o/r", {"r.Q4_K_M.gguf": make_gguf(tmp_path, 13), "r.Q8_0.gguf": make_gguf(tmp_path, 14)})
    with pytest.raises(BadRequest) as info:
        await pull_model(store, "hf.co/o/r:Q5_K_S", SimpleNamespace(hf_endpoint=base))
    assert 'no GGUF file for quantization "Q5_K_S" in o/r; available: Q4_K_M, Q8_0' == info.value.message
    assert not any("resolve" in p for p, _ in state.requests)
    assert store.list() == []


async def test_hf_bad_oid_and_missing_repo(server: tuple[str, ServerState], store: ModelStore, tmp_path: Path) -> None:
    base, state = server
    hf_repo(state, "o/r", {"r-Q4_K_M.gguf": make_gguf(tmp_path, 15)}, oids={"r-Q4_K_M.gguf": "f" * 64})
    settings = SimpleNamespace(hf_endpoint=base)
    with pytest.raises(EngineError, match="sha256 mismatch") as info:
        await pull_model(store, "hf.co/o/r", settings)
    assert info.value.status == 502
    assert store.list() == [] and list(store.blobs.dir.iterdir()) == []
    with pytest.raises(EngineError, match="not found") as info:
        await pull_model(store, "hf.co/o/nothing:Q4_K_M", settings)
    assert info.value.status == 404


def entries(*paths: str) -> list[dict[str, Any]]:
    return [{"type": "file", "path": p, "size": 1} for p in paths]


@pytest.mark.parametrize(
    ("paths", "tag", "chosen"),
    [
        (("a-Q4_K_M.gguf", "a-Q4_K_S.gguf"), "Q4_K_S", "a-Q4_K_S.gguf"),
        (("a-Q4_K_M.gguf", "a-Q4_K.gguf"), "Q4_K", "a-Q4_K.gguf"),  # Q4_K is not a prefix match of Q4_K_M
        (("a-IQ4_XS.gguf", "a.Q4_XS.gguf"), "q4_xs", "a.Q4_XS.gguf"),
        (("a-Q8_0.gguf", "b-Q4_K_M.gguf"), "latest", "b-Q4_K_M.gguf"),
        (("a-Q8_0.gguf", "b-F16.gguf"), "latest", "a-Q8_0.gguf"),
        (("mmproj-Q4_K_M.gguf", "a-Q4_K_M.gguf"), "Q4_K_M", "a-Q4_K_M.gguf"),
        (("sub/dir/a-UD-Q4_K_XL.gguf",), "UD-Q4_K_XL", "sub/dir/a-UD-Q4_K_XL.gguf"),
    ],
)
def test_choose_gguf(paths: tuple[str, ...], tag: str, chosen: str) -> None:
    assert choose_gguf(entries(*paths), tag, "o/r")["path"] == chosen


@pytest.mark.parametrize(
    ("paths", "tag", "message"),
    [
        (("README.md", "mmproj-f16.gguf"), "latest", "no GGUF files"),
        (("Q4_K_M/a-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/a-Q4_K_M-00002-of-00002.gguf"), "Q4_K_M", "split"),
        (("a-Q4_K_M.gguf",), "Q4_K", "available: Q4_K_M"),
    ],
)
def test_choose_gguf_errors(paths: tuple[str, ...], tag: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        choose_gguf(entries(*paths), tag, "o/r")

