"""`flexi rag eval` end to end: the CLI against a real `flexi serve` with the bundled embedding model and
the default chat model, on the shipped English set (all documents, a few questions to stay fast)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flexi.cli.rag_eval import register
from flexi.store import DEFAULT_EMBED_MODEL_NAME
from flexi.store.store import DEFAULT_MODEL_NAME
from tests.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def eval_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("rageval") / "home", {"FLEXI_DEFAULT_EMBEDDING_MODEL": "true"})
    yield srv
    stop_server(srv)


@pytest.fixture()
def cli(eval_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("FLEXI_HOST", eval_server.url.removeprefix("http://"))
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    app, rag = typer.Typer(), typer.Typer()
    register(rag)
    app.add_typer(rag, name="rag")
    return app


def test_eval_on_the_shipped_set_writes_the_report(cli: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["rag", "eval", "--set", "en", "--chunk-sizes", "200", "--limit", "2",
                                      "--answers", DEFAULT_MODEL_NAME, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "no reranker" in result.output and "Report written" in result.output

    data = json.loads((out / "rag-eval.json").read_text("utf-8"))
    rows = {r["mode"]: r for r in data["results"]}
    assert set(rows) == {"lexical", "dense", "hybrid"} and len(data["results"]) == 3
    assert rows["dense"]["embedding_model"] == DEFAULT_EMBED_MODEL_NAME and rows["lexical"]["embedding_model"] is None
    for row in rows.values():
        assert row["set"] == "en" and row["questions"] == 2 and row["chunks"] > 20 and row["k"] == 5
        assert 0.0 <= row["recall_at_1"] <= row["recall"] <= 1.0 and 0.0 <= row["mrr"] <= 1.0
        assert set(row["ranks"]) == {"en-01", "en-02"}
    # the two first questions are answered in the material; the bundled model finds each in the top 5
    assert rows["hybrid"]["recall"] == 1.0 and rows["dense"]["recall"] == 1.0

    hybrid = rows["hybrid"]
    assert hybrid["answers"] == 2 and len(hybrid["answer_details"]) == 2
    assert all(d["answer"].strip() for d in hybrid["answer_details"])
    for key in ("citation_accuracy", "groundedness"):
        assert hybrid[key] is None or 0.0 <= hybrid[key] <= 1.0
    assert rows["lexical"]["answers"] == 0 and rows["dense"]["answers"] == 0

    table = (out / "rag-eval.md").read_text("utf-8")
    assert "| en | 200 | hybrid | all-minilm:l6-v2 | 2 |" in table and "citation accuracy" in table
    assert (out / "rag-eval.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_embedding_model_is_a_clear_error(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["rag", "eval", "--set", "de", "--modes", "dense", "--chunk-sizes", "200",
                                      "--limit", "1", "-e", "no-such-model", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "no-such-model" in result.output
    assert not (tmp_path / "r").exists()
