"""`flexi` commands against a real local HTTP server that answers like Ollama."""

from __future__ import annotations

import hashlib
import socket
import sys
import types
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from tests.cli.test_fake import LICENSE, FakeOllama

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None,
           "FORCE_COLOR": None, "TTY_COMPATIBLE": None}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def invoke(fake: FakeOllama | None, *args: str, host: str | None = None, **env: str | None):
    host = host or (fake.url if fake else "127.0.0.1:9")
    return CliRunner().invoke(app, list(args), env={**ENGLISH, "FLEXI_HOST": host, **env})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- list / ps --------------------------------------------------------------
def test_list_shows_name_id_size_and_modified(fake):
    result = invoke(fake, "list")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert row.split()[:2] == ["smollm2:135m", "2af3b81862c6"]
    assert "98 MB" in row and "2 minutes ago" in row
    assert fake.paths() == ["GET /api/tags"]


def test_ls_is_an_alias_and_filters_by_prefix(fake):
    fake.models["other:latest"] = fake.models["smollm2:135m"]
    result = invoke(fake, "ls", "oth")
    assert result.exit_code == 0
    assert "other:latest" in result.stdout and "smollm2" not in result.stdout


def test_ps_shows_processor_context_and_until(fake):
    result = invoke(fake, "ps")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    for text in ("smollm2:135m", "2af3b81862c6", "180 MB", "100% CPU", "4096", "4 minutes from now"):
        assert text in row


def test_ps_forever(fake):
    fake.ps_expires = datetime.now(timezone.utc) + timedelta(days=365 * 300)
    assert "Forever" in invoke(fake, "ps").stdout


# --- show ---------------------------------------------------------------------
def test_show_prints_ollama_like_sections(fake):
    result = invoke(fake, "show", "smollm2:135m")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("  Model", "architecture        llama", "134.52M", "context length", "8192", "embedding length",
                 "576", "quantization        Q4_1", "  Capabilities", "completion", "  Parameters",
                 '"<|im_end|>"', "  System", "You are a helpful assistant.", "  License", "Apache License"):
        assert text in out, text
    assert "http://www.apache.org" not in out and "..." in out  # license cut after two lines
    assert fake.last("POST", "/api/show").json == {"model": "smollm2:135m", "verbose": False}


@pytest.mark.parametrize("flag,expected", [("--license", LICENSE.rstrip()), ("--template", "{{ .Prompt }}"),
                                           ("--system", "You are a helpful assistant.")])
def test_show_single_field(fake, flag, expected):
    result = invoke(fake, "show", "smollm2:135m", flag)
    assert result.exit_code == 0
    assert result.stdout == expected + "\n"


def test_show_unknown_model_prints_server_error(fake):
    result = invoke(fake, "show", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == 'Error: model "nope" not found, try pulling it first'
    assert "Traceback" not in result.output


# --- cp / rm / stop -----------------------------------------------------------
def test_cp_sends_source_and_destination(fake):
    result = invoke(fake, "cp", "smollm2:135m", "mine:v1")
    assert result.exit_code == 0
    assert result.stdout.strip() == "copied 'smollm2:135m' to 'mine:v1'"
    assert fake.last("POST", "/api/copy").json == {"source": "smollm2:135m", "destination": "mine:v1"}


def test_rm_deletes_each_model(fake):
    fake.models["a:1"] = fake.models["b:1"] = fake.models["smollm2:135m"]
    result = invoke(fake, "rm", "a:1", "b:1")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["deleted 'a:1'", "deleted 'b:1'"]
    assert [r.json for r in fake.requests if r.method == "DELETE"] == [{"model": "a:1"}, {"model": "b:1"}]


def test_rm_unknown_model_fails(fake):
    result = invoke(fake, "rm", "ghost")
    assert result.exit_code == 1 and 'model "ghost" not found' in result.stderr


def test_stop_sends_keep_alive_zero(fake):
    result = invoke(fake, "stop", "smollm2:135m")
    assert result.exit_code == 0, result.output
    body = fake.last("POST", "/api/generate").json
    assert body["model"] == "smollm2:135m" and body["keep_alive"] == 0


def test_stop_unknown_model(fake):
    result = invoke(fake, "stop", "ghost")
    assert result.exit_code == 1
    assert "couldn't find model \"ghost\" to stop" in result.stderr


# --- version ------------------------------------------------------------------
@pytest.mark.parametrize("args", [["version"], ["--version"], ["-v"]])
def test_version_shows_server_and_client(fake, args):
    result = invoke(fake, *args)
    assert result.exit_code == 0
    assert "flexi version is 0.1.0-test" in result.stdout
    assert "client version is 0.1.0" in result.stdout


def test_version_without_server_still_shows_client():
    result = invoke(None, "version", host=f"127.0.0.1:{free_port()}")
    assert result.exit_code == 0
    assert "client version is" in result.stdout and "could not connect" in result.stderr


# --- errors ---------------------------------------------------------------------
def test_connection_refused_message_and_exit_code():
    port = free_port()
    result = invoke(None, "list", host=f"127.0.0.1:{port}")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: could not connect to Flexi at http://127.0.0.1:{port}; is `flexi serve` running?")
    assert "Traceback" not in result.output


def test_connection_refused_in_german():
    port = free_port()
    result = invoke(None, "ps", host=f":{port}", LANG="de_DE.UTF-8")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Fehler: Keine Verbindung zu Flexi unter http://127.0.0.1:{port}")


def test_wildcard_host_connects_to_loopback(fake):
    port = fake.url.rsplit(":", 1)[1]
    assert invoke(fake, "list", host=f"0.0.0.0:{port}").exit_code == 0


def test_api_key_is_sent_as_bearer_token(fake):
    invoke(fake, "list", FLEXI_API_KEY="secret")
    assert fake.requests[0].headers["Authorization"] == "Bearer secret"


# --- pull -------------------------------------------------------------------------
def test_pull_streams_progress(fake):
    result = invoke(fake, "pull", "tinyllama:1b", "--insecure")
    assert result.exit_code == 0, result.output
    for text in ("pulling manifest", "pulling 2af3b81862c6", "verifying sha256 digest", "writing manifest", "success"):
        assert text in result.stderr
    assert result.stderr.index("pulling manifest") < result.stderr.index("pulling 2af3") \
        < result.stderr.index("verifying") < result.stderr.index("success")
    assert fake.last("POST", "/api/pull").json == {"model": "tinyllama:1b", "insecure": True, "stream": True}


def test_pull_error_inside_stream(fake):
    result = invoke(fake, "pull", "missing:1b")
    assert result.exit_code == 1
    assert "Error: pull model manifest: file does not exist" in result.stderr


# --- create -------------------------------------------------------------------------
def _gguf(tmp_path, name="tiny.gguf"):
    path = tmp_path / name
    path.write_bytes(b"GGUF" + bytes(range(256)) * 50)
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_create_from_gguf_uploads_blob_then_creates(fake, tmp_path):
    path, digest = _gguf(tmp_path)
    result = invoke(fake, "create", "tiny", "--file", str(path))
    assert result.exit_code == 0, result.output
    assert fake.paths() == [f"HEAD /api/blobs/{digest}", f"POST /api/blobs/{digest}", "POST /api/create"]
    upload = fake.last("POST", f"/api/blobs/{digest}")
    assert upload.body == path.read_bytes()
    assert fake.last("POST", "/api/create").json == {"model": "tiny", "files": {"tiny.gguf": digest}, "stream": True}
    assert "success" in result.stderr


def test_create_skips_upload_when_blob_exists(fake, tmp_path):
    path, digest = _gguf(tmp_path)
    fake.blobs[digest] = path.read_bytes()
    result = invoke(fake, "create", "tiny", "-f", str(path))
    assert result.exit_code == 0, result.output
    assert f"POST /api/blobs/{digest}" not in fake.paths()
    assert "using existing layer" in result.stderr


def test_create_from_modelfile(fake, tmp_path):
    _, digest = _gguf(tmp_path, "weights.bin")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(
        "# a comment\nFROM ./weights.bin\n"
        'TEMPLATE """<|im_start|>user\n{{ .Prompt }}<|im_end|>\n"""\n'
        "SYSTEM Du bist ein Tutor.\nPARAMETER temperature 0.2\nPARAMETER num_ctx 2048\n"
        'PARAMETER stop "<|im_end|>"\nPARAMETER stop <|im_start|>\nLICENSE MIT\n'
    )
    result = invoke(fake, "create", "tutor", "-f", str(modelfile))
    assert result.exit_code == 0, result.output
    assert fake.last("POST", "/api/create").json == {
        "model": "tutor", "files": {"model.gguf": digest},
        "template": "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n", "system": "Du bist ein Tutor.",
        "parameters": {"temperature": 0.2, "num_ctx": 2048, "stop": ["<|im_end|>", "<|im_start|>"]},
        "license": "MIT", "stream": True,
    }


def test_create_from_existing_model(fake, tmp_path):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smollm2:135m\nSYSTEM Answer briefly.\n")
    result = invoke(fake, "create", "brief", "-f", str(modelfile))
    assert result.exit_code == 0, result.output
    assert fake.paths() == ["POST /api/create"]
    assert fake.last("POST", "/api/create").json == {
        "model": "brief", "from": "smollm2:135m", "system": "Answer briefly.", "stream": True}


def test_create_with_bad_modelfile_names_the_line(fake, tmp_path):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM x\nSYSTME typo\n")
    result = invoke(fake, "create", "bad", "-f", str(modelfile))
    assert result.exit_code == 1
    assert "Modelfile line 2" in result.stderr and fake.requests == []


def test_create_missing_file(fake, tmp_path):
    result = invoke(fake, "create", "x", "-f", str(tmp_path / "nope.gguf"))
    assert result.exit_code == 1 and "file not found" in result.stderr


def test_create_from_safetensors_directory_uploads_its_model_files(fake, tmp_path):
    model = tmp_path / "MiniLM"
    (model / "1_Pooling").mkdir(parents=True)
    (model / ".git").mkdir()
    files = {"config.json": b"{}", "model.safetensors": b"weights", "tokenizer.json": b"{}", "vocab.txt": b"[PAD]",
             "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}'}
    for rel, data in files.items():
        (model / rel).write_bytes(data)
    (model / "README.md").write_text("not needed")
    (model / ".git" / "config.json").write_text("never uploaded")
    (tmp_path / "Modelfile").write_text("FROM ./MiniLM\nPARAMETER num_ctx 256\n")
    result = invoke(fake, "create", "mini", "-f", str(tmp_path / "Modelfile"))
    assert result.exit_code == 0, result.output
    digests = {rel: "sha256:" + hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    assert fake.last("POST", "/api/create").json == {
        "model": "mini", "files": digests, "parameters": {"num_ctx": 256}, "stream": True}
    assert {fake.blobs[d] for d in digests.values()} == set(files.values())
    # the directory itself works like a GGUF file does: `-f <directory>`
    assert invoke(fake, "create", "mini2", "-f", str(model)).exit_code == 0
    assert fake.last("POST", "/api/create").json["files"] == digests


def test_create_from_a_directory_without_a_model_says_what_is_missing(fake, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text("{}")
    result = invoke(fake, "create", "x", "-f", str(tmp_path / "notes"))
    assert result.exit_code == 1 and "safetensors" in result.stderr and fake.requests == []


# --- serve --------------------------------------------------------------------------
def test_serve_builds_settings_from_flags(monkeypatch, tmp_path):
    seen = {}
    module = types.ModuleType("flexi.server.app")
    module.run_server = lambda settings: seen.setdefault("settings", settings)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flexi.server.app", module)
    monkeypatch.setenv("FLEXI_CONFIG", str(tmp_path / "none.toml"))
    result = invoke(None, "serve", "--host", "0.0.0.0:9999", "--home", str(tmp_path), "--keep-alive", "10m",
                    "--max-loaded-models", "2", "--default-model", "tiny:1b", "--auth", "on")
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert settings.auth == "on"
    assert (settings.bind_host, settings.bind_port) == ("0.0.0.0", 9999)
    assert settings.home == tmp_path and settings.keep_alive == "10m"
    assert settings.max_loaded_models == 2 and settings.default_model == "tiny:1b"


def test_serve_rejects_bad_keep_alive(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEXI_CONFIG", str(tmp_path / "none.toml"))
    result = invoke(None, "serve", "--keep-alive", "soon", "--home", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: keep_alive") and "Traceback" not in result.output


@pytest.mark.parametrize("extra, refused", [([], True), (["--auth", "on"], False), (["--insecure-no-auth"], False)])
def test_serve_refuses_open_non_loopback_address(monkeypatch, tmp_path, extra, refused):
    """auth=off is the laptop default; on a reachable address it needs auth or an explicit override."""
    seen = {}
    module = types.ModuleType("flexi.server.app")
    module.run_server = lambda settings: seen.setdefault("settings", settings)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flexi.server.app", module)
    monkeypatch.setenv("FLEXI_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("FLEXI_AUTH", raising=False)
    result = invoke(None, "serve", "--host", "0.0.0.0:9999", "--home", str(tmp_path), *extra)
    if refused:
        assert result.exit_code != 0 and "refusing to listen on 0.0.0.0 without authentication" in result.stderr
        assert "settings" not in seen
    else:
        assert result.exit_code == 0, result.output
