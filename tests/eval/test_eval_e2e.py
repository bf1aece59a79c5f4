"""`flexi eval` against the real Flexi server (real runner, real default model), a few items per task."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flexi.cli.main import app
from tests.conftest import MODEL

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.e2e

ENGLISH = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "en_US.UTF-8", "FLEXI_API_KEY": None}
GERMAN = {"LC_ALL": None, "LC_MESSAGES": None, "LANG": "de_DE.UTF-8", "FLEXI_API_KEY": None}


def test_eval_against_flexi(server, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", MODEL, "--url", server.url, "--tasks", "flexi_truthfulqa_mc,flexi_mgsm_de",
                                      "--limit", "3", "--max-tokens", "16", "--speed-tokens", "16", "--out", str(out),
                                      "--save"], env=ENGLISH)
    assert result.exit_code == 0, result.output + result.stderr
    # nothing leaves the machine unless asked: lm-eval's dataset loading is switched offline (no --allow-download)
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1" and os.environ.get("HF_HUB_OFFLINE") == "1"
    doc = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert doc["tool"] == "flexi eval" and doc["target"] == {"url": server.url, "local": True}
    assert doc["versions"]["lm_eval"] and doc["versions"]["flexi_server"] and doc["machine"]["cpu_cores"] >= 1
    assert doc["parameters"]["task_kinds"] == {"flexi_truthfulqa_mc": "loglikelihood", "flexi_mgsm_de": "generate"}
    [res] = doc["results"]
    assert res["model"] == MODEL
    german = res["scores"]["flexi_mgsm_de"]
    assert german["n"] == 3 and german["language"] == "de" and german["metric"] == "exact_match"
    assert 0.0 <= german["score"] <= 1.0 and res["average_de"] == german["score"]
    assert res["tokens_per_s"] > 0 and not res["speed"]["errors"]
    mc = res["scores"]["flexi_truthfulqa_mc"]  # scored through echo + logprobs of Flexi's own runner
    assert mc["n"] == 3 and mc["language"] == "en" and mc["metric"] == "acc" and 0.0 <= mc["score"] <= 1.0
    assert res["average"] == pytest.approx((mc["score"] + german["score"]) / 2) and not res["errors"]
    md = (out / "eval.md").read_text(encoding="utf-8")
    assert "| Model | flexi_truthfulqa_mc | flexi_mgsm_de | Average | Average (de) | tok/s |" in md
    assert f"| {MODEL} |" in md and "TOK/S" in result.output
    # --save stored the result with the model: the picker shows its average (auth is off: the local admin)
    cards = {m["name"]: m for m in httpx.get(server.url + "/ui/models", timeout=30).json()["models"]}
    assert cards[MODEL]["measured"]["eval"]["summary"]["average"] == pytest.approx(res["average"])


def test_unknown_task_lists_the_shipped_ones(server, tmp_path: Path):
    result = CliRunner().invoke(app, ["eval", MODEL, "--url", server.url, "--tasks", "no_such_task",
                                      "--out", str(tmp_path)], env=ENGLISH)
    assert result.exit_code == 1
    assert "unknown task(s): no_such_task" in result.stderr and "flexi_mgsm_de" in result.stderr


def test_unknown_model_is_refused_in_german(server, tmp_path: Path):
    result = CliRunner().invoke(app, ["eval", "no-such-model:1b", "--url", server.url, "--out", str(tmp_path)], env=GERMAN)
    assert result.exit_code == 1
    assert "Modell(e) auf dem Server nicht gefunden: no-such-model:1b" in result.stderr and MODEL in result.stderr


def test_unreachable_server(tmp_path: Path):
    result = CliRunner().invoke(app, ["eval", MODEL, "--url", "http://127.0.0.1:9", "--out", str(tmp_path)], env=ENGLISH)
    assert result.exit_code == 1 and "cannot reach http://127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
