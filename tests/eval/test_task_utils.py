"""Scoring of the shipped generative tasks: the final number of a worked answer, English or German."""

from __future__ import annotations

import json

import pytest

from flexi.eval.tasks import SHIPPED, TASK_DIR
from flexi.eval.tasks.utils import extract_answer, normalize_number, process_math


@pytest.mark.parametrize(("text", "value"), [
    ("18", 18.0), ("80.000", 80000.0), ("80,000", 80000.0), ("1.234.567", 1234567.0), ("18.", 18.0),
    ("2,5", 2.5), ("2.5", 2.5), ("-3", -3.0), ("1.234,5", 1234.5), ("abc", None),
])
def test_numbers_in_english_and_german_notation(text, value):
    assert normalize_number(text) == value


@pytest.mark.parametrize(("response", "value"), [
    ("She sells 9 eggs at $2 each: 9 * 2 = 18.\nThe answer is 18.", 18.0),
    ("Sie verkauft 9 Eier für je 2 Dollar.\nDie Antwort lautet 18.", 18.0),
    ("The answer is $70,000. Later steps: 5 + 5 = 10", 70000.0),  # the marked answer, not the last number
    ("16 - 3 - 4 = 9, 9 * 2 = 18", 18.0),  # no marker: the last number
    ("#### 42", 42.0),
    ("Die Antwort lautet N.", None),
    ("", None),
])
def test_the_final_answer_of_a_worked_solution(response, value):
    assert extract_answer(response) == value


def test_process_math_compares_numbers_not_strings():
    assert process_math({"answer": "70000"}, ["Gewinn: 70.000 Dollar. Die Antwort lautet 70.000."]) == {"exact_match": 1}
    assert process_math({"answer": "18"}, ["The answer is 81."]) == {"exact_match": 0}
    assert process_math({"answer": "18"}, []) == {"exact_match": 0}


def test_shipped_tasks_have_their_data_and_attribution():
    for name in SHIPPED:
        assert (TASK_DIR / f"{name}.yaml").is_file()
    for file in ("gsm8k.jsonl", "mgsm_de.jsonl", "truthfulqa_mc.jsonl"):
        rows = [json.loads(line) for line in (TASK_DIR / "data" / file).read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 50 and [r["id"] for r in rows] == list(range(50))
    mc = [json.loads(line) for line in (TASK_DIR / "data" / "truthfulqa_mc.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(2 <= len(r["choices"]) <= 4 and 0 <= r["label"] < len(r["choices"]) for r in mc)
    attribution = (TASK_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in attribution and "MIT" in attribution and "CC BY 4.0" in attribution
