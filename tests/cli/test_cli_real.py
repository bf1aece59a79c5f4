"""The `flexi` command against the real server (subprocesses, like a user at a terminal)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import MODEL, RunningServer

pytestmark = pytest.mark.e2e


def flexi(server: RunningServer, *args: str, input: str | None = None, lang: str = "en_US.UTF-8") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEXI_HOST": server.host, "LANG": lang, "LC_ALL": "", "COLUMNS": "200"}
    env.pop("LC_MESSAGES", None)
    return subprocess.run([sys.executable, "-m", "flexi", *args], env=env, input=input, capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def greedy_model(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Modelfile-made variant with temperature 0, so answers are deterministic."""
    modelfile = tmp_path_factory.mktemp("mf") / "Modelfile"
    modelfile.write_text(f"FROM {MODEL}\nPARAMETER temperature 0\nPARAMETER num_predict 24\n")
    r = flexi(server, "create", "greedy", "-f", str(modelfile))
    assert r.returncode == 0, r.stdout + r.stderr
    return "greedy"


def test_run_answers_once(server: RunningServer, greedy_model: str) -> None:
    r = flexi(server, "run", greedy_model, "What is the capital of France? Answer in one word.", "--verbose")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "eval rate" in (r.stdout + r.stderr)


def test_run_reads_stdin_when_piped(server: RunningServer, greedy_model: str) -> None:
    r = flexi(server, "run", greedy_model, input="What is the capital of France?")
    assert r.returncode == 0 and "Paris" in r.stdout


def test_list_ps_show(server: RunningServer) -> None:
    listed = flexi(server, "list")
    assert listed.returncode == 0 and MODEL in listed.stdout and "MB" in listed.stdout
    flexi(server, "run", MODEL, "Hi")
    ps = flexi(server, "ps")
    assert ps.returncode == 0 and MODEL in ps.stdout and "CPU" in ps.stdout
    show = flexi(server, "show", MODEL)
    assert show.returncode == 0 and "llama" in show.stdout and "Q4_1" in show.stdout and "8192" in show.stdout


def test_create_cp_rm_stop(server: RunningServer) -> None:
    from flexi.store.store import default_model_file

    created = flexi(server, "create", "cli-made", "--file", str(default_model_file()))
    assert created.returncode == 0, created.stderr
    assert flexi(server, "cp", "cli-made", "cli-copy").returncode == 0
    assert "cli-copy" in flexi(server, "list").stdout
    assert flexi(server, "rm", "cli-made", "cli-copy").returncode == 0
    out = flexi(server, "list").stdout
    assert "cli-made" not in out and "cli-copy" not in out
    assert flexi(server, "stop", MODEL).returncode == 0


def test_errors_are_messages_not_tracebacks(server: RunningServer) -> None:
    r = flexi(server, "show", "no-such-model")
    assert r.returncode == 1
    assert 'model "no-such-model:latest" not found' in (r.stdout + r.stderr) or 'not found' in (r.stdout + r.stderr)
    assert "Traceback" not in r.stderr
    down = subprocess.run([sys.executable, "-m", "flexi", "list"], env={**os.environ, "FLEXI_HOST": "127.0.0.1:9"},
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "flexi serve" in (down.stdout + down.stderr) and "Traceback" not in down.stderr


def test_german_messages(server: RunningServer) -> None:
    down = subprocess.run([sys.executable, "-m", "flexi", "list"],
                          env={**os.environ, "FLEXI_HOST": "127.0.0.1:9", "LANG": "de_DE.UTF-8", "LC_ALL": ""},
                          capture_output=True, text=True, timeout=60)
    text = down.stdout + down.stderr
    assert down.returncode == 1 and ("Verbindung" in text or "verbinden" in text)
