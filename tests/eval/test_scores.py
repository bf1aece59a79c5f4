"""lm-eval results → normalised scores, averages and the Table-4-style report (no server, no lm-eval run)."""

from __future__ import annotations

import pytest

from flexi.eval.report import markdown, rows
from flexi.eval.scores import averages, language_of, pick_metric, task_score

HELLASWAG = {"alias": "hellaswag", "acc,none": 0.31, "acc_stderr,none": 0.02, "acc_norm,none": 0.36,
             "acc_norm_stderr,none": 0.021}
GSM8K = {"alias": "gsm8k", "exact_match,strict-match": 0.02, "exact_match_stderr,strict-match": 0.01,
         "exact_match,flexible-extract": 0.05, "exact_match_stderr,flexible-extract": 0.012}


def lm_eval_results(task: str, values: dict, n: int = 40, language: str | None = None) -> dict:
    return {"results": {task: values}, "n-samples": {task: {"original": 50, "effective": n}},
            "higher_is_better": {task: {k.split(",")[0]: True for k in values if "," in k}},
            "configs": {task: {"metadata": {"version": 1.0, **({"language": language} if language else {})}}}}


def test_acc_norm_is_preferred_as_on_the_leaderboard():
    assert pick_metric(HELLASWAG) == ("acc_norm", "none")
    score = task_score(lm_eval_results("hellaswag", HELLASWAG), "hellaswag")
    assert score == {"score": 0.36, "metric": "acc_norm", "n": 40, "language": "en", "stderr": 0.021}


def test_flexible_extract_before_strict_match():
    score = task_score(lm_eval_results("gsm8k", GSM8K), "gsm8k")
    assert score["score"] == 0.05 and score["metric"] == "exact_match (flexible-extract)" and score["stderr"] == 0.012


def test_values_outside_0_1_and_lower_is_better_metrics_never_count():
    values = {"word_perplexity,none": 12.5, "bleu_max,none": 30.1, "acc,none": 0.5, "acc_stderr,none": "N/A"}
    assert task_score(lm_eval_results("x", values), "x")["score"] == 0.5
    assert task_score(lm_eval_results("x", values), "x")["stderr"] is None
    hib = {"results": {"y": {"ter,none": 0.4}}, "higher_is_better": {"y": {"ter": False}}}
    assert task_score(hib, "y") is None
    assert task_score({"results": {}}, "missing") is None


def test_groups_count_the_items_of_their_subtasks():
    results = {"results": {"mmlu": {"acc,none": 0.25}}, "group_subtasks": {"mmlu": ["mmlu_a", "mmlu_b"]},
               "n-samples": {"mmlu_a": {"effective": 3}, "mmlu_b": {"effective": 4}}}
    assert task_score(results, "mmlu")["n"] == 7


@pytest.mark.parametrize(("task", "metadata", "language"), [
    ("flexi_mgsm_de", None, "de"), ("belebele_deu_Latn", None, "de"), ("arc_de", None, "de"),
    ("hellaswag", None, "en"), ("mgsm_native_cot_de", None, "de"), ("flexi_x", {"language": "de"}, "de"),
    ("xnli_de", {"language": "en"}, "en"), ("indeed", None, "en"),
])
def test_language_from_metadata_else_from_the_name(task, metadata, language):
    assert language_of(task, metadata) == language


def test_averages_overall_and_per_language():
    scores = {"a": {"score": 0.5, "language": "en"}, "b": {"score": 0.25, "language": "de"},
              "c": {"score": 0.75, "language": "de"}}
    assert averages(scores) == {"average": 0.5, "average_de": 0.5, "average_en": 0.5}
    assert averages({"a": {"score": 1.0, "language": "en"}}) == {"average": 1.0, "average_de": None, "average_en": 1.0}
    assert averages({}) == {"average": None, "average_de": None, "average_en": None}


def doc() -> dict:
    return {
        "tool": "flexi eval", "started_at": "2026-12-03T22:00:00+00:00", "finished_at": "2026-12-03T22:05:00+00:00",
        "target": {"url": "http://127.0.0.1:11434", "local": True},
        "versions": {"flexi_client": "0.1.0", "flexi_server": "0.1.0", "lm_eval": "0.4.13", "llama_cpp_python": "0.3"},
        "machine": {"cpu_model": "CPU", "cpu_cores": 2, "cpu_cores_usable": 2, "ram_gib": 8.0, "os": "Linux", "gpus": []},
        "parameters": {"tasks": ["flexi_truthfulqa_mc", "flexi_mgsm_de"], "limit": 3,
                       "task_kinds": {"flexi_truthfulqa_mc": "loglikelihood", "flexi_mgsm_de": "generate"},
                       "task_languages": {"flexi_truthfulqa_mc": "en", "flexi_mgsm_de": "de"}},
        "results": [
            {"model": "a:1b", "scores": {"flexi_truthfulqa_mc": {"score": 0.5, "metric": "acc", "n": 3, "language": "en", "stderr": 0.1},
                                        "flexi_mgsm_de": {"score": 0.25, "metric": "exact_match", "n": 3, "language": "de", "stderr": None}},
             "average": 0.375, "average_de": 0.25, "tokens_per_s": 42.25, "errors": {}},
            {"model": "b|x", "scores": {"flexi_mgsm_de": {"score": 0.0, "metric": "exact_match", "n": 3, "language": "de", "stderr": 0.0}},
             "average": 0.0, "average_de": 0.0, "tokens_per_s": None,
             "errors": {"flexi_truthfulqa_mc": "the server refused prompt log-probabilities"}},
        ],
    }


def test_rows_one_per_model_with_task_columns():
    first, second = rows(doc())
    assert first == {"model": "a:1b", "flexi_truthfulqa_mc": "0.50", "flexi_mgsm_de": "0.25", "average": "0.38",
                     "average_de": "0.25", "tokens_per_s": "42.2", "errors": "0"}
    assert second["flexi_truthfulqa_mc"] == "error" and second["tokens_per_s"] == "–" and second["errors"] == "1"


def test_markdown_is_table_4_shaped_and_names_failures():
    md = markdown(doc())
    assert "| Model | flexi_truthfulqa_mc | flexi_mgsm_de | Average | Average (de) | tok/s | Failed tasks |" in md
    assert "| a:1b | 0.50 | 0.25 | 0.38 | 0.25 | 42.2 | 0 |" in md
    assert "| b\\|x | error |" in md  # a pipe in a model name cannot break the table
    assert "lm-evaluation-harness 0.4.13" in md and "at most 3 items per task" in md
    assert "- `flexi_truthfulqa_mc` (en): acc, n = 3; log-likelihood" in md
    assert "- b|x, `flexi_truthfulqa_mc`: the server refused prompt log-probabilities" in md
