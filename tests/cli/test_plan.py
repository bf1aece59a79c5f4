"""`flexi plan`: the planner's numbers on the command line, in English and German, and as JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from flexi.scheduler.memory import estimate_runner_bytes
from flexi.store.gguf_meta import read_gguf_info
from flexi.store.store import ModelStore
from tests.store.test_gguf_meta import SMOLLM2
from tests.store.test_remote_gguf import _Server

ENV = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FORCE_COLOR": None, "TTY_COMPATIBLE": None,
       "FLEXI_MAX_MEMORY": str(2 * 1024**3), "FLEXI_HF_ENDPOINT": None, "FLEXI_PULL_ALLOW_HOSTS": None}
INFO = read_gguf_info(SMOLLM2)
SIZE = SMOLLM2.stat().st_size


def invoke(tmp_path, *args: str, **env: str | None):
    return CliRunner().invoke(app, ["plan", *args], env={**ENV, "FLEXI_HOME": str(tmp_path), **env})


def test_json_is_the_admission_estimate_and_the_budget_is_flexi_max_memory(tmp_path):
    result = invoke(tmp_path, "smollm2:135m", "--users", "2", "--ctx", "2048", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["memory"]["total"] == estimate_runner_bytes(SIZE, INFO, 2048, 2)
    assert data["kv"]["bytes_per_token"] == 2 * 30 * 3 * 64 * 2
    assert data["device"] == {"name": "host", "memory": 2 * 1024**3, "bandwidth": None, "source": "budget"}
    assert data["fits"] is True and data["tokens_per_second_upper_bound"] is None
    most = data["max_users"]
    assert estimate_runner_bytes(SIZE, INFO, 2048, most) <= 2 * 1024**3 < estimate_runner_bytes(SIZE, INFO, 2048, most + 1)


def test_installed_model_gpu_table_and_german_text(tmp_path):
    ModelStore(tmp_path / "models").create_from_file("mine:q4", SMOLLM2)
    result = invoke(tmp_path, "mine:q4", "--users", "4", "--ctx", "20000", "--gpu", "t4", LANG="de_DE.UTF-8")
    assert result.exit_code == 0, result.output
    assert "Speicherplan für mine:q4" in result.output
    assert "2 × 30 Schichten × 3 KV-Köpfe × 64 Kopfdimension × 2 B = 22,5 KiB" in result.output
    assert "t4, 16,00 GiB" in result.output and "Token/s" in result.output and "Obergrenze" in result.output
    assert "trainiert; der Server begrenzt einen Kontext von 20000" in result.output


def test_english_table_with_mem_and_bandwidth(tmp_path):
    result = invoke(tmp_path, str(SMOLLM2), "--users", "1", "--ctx", "512", "--mem", "0.3", "--bandwidth", "100")
    assert result.exit_code == 0, result.output
    assert "memory needed" in result.output and "upper bound" in result.output
    assert "fits" in result.output and "NO (" in result.output  # ~390 MiB needed at 512 tokens
    assert f"≤ {100e9 / SIZE:,.0f} tokens/s" in result.output


@pytest.mark.parametrize("args, message", [
    (["--gpu", "voodoo2"], "unknown GPU voodoo2"),
    (["--gpu", "t4", "--mem", "8"], "either --gpu or --mem"),
    (["--cache-type", "q5_1"], "--cache-type must be"),
])
def test_bad_options_fail_with_a_message(tmp_path, args, message):
    result = invoke(tmp_path, "smollm2:135m", *args)
    assert result.exit_code == 1 and message in result.output


def test_unknown_local_model_fails(tmp_path):
    result = invoke(tmp_path, "nothere:1b")
    assert result.exit_code == 1 and 'model "nothere:1b" not found' in result.output


@pytest.fixture
def hf() -> Iterator[_Server]:
    server = _Server(ranges=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_model_not_yet_pulled_is_read_from_its_header(tmp_path, hf):
    result = invoke(tmp_path, "hf.co/org/repo:Q4_1", "--ctx", "4096", "--users", "3", "--json",
                    FLEXI_HF_ENDPOINT=hf.base)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["memory"]["total"] == estimate_runner_bytes(SIZE, INFO, 4096, 3)
    assert not (tmp_path / "models" / "blobs").exists() or not any((tmp_path / "models" / "blobs").iterdir())
