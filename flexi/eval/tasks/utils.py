"""Loaders and scoring for the shipped `flexi_*` tasks (lm-eval loads this file by path through `!function`).

Kept free of other Flexi imports: lm-eval executes it as a stand-alone module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"

_NUMBER = re.compile(r"-?\d[\d.,]*")
# "The answer is 18", "Die Antwort lautet 18", "#### 18": the number after the last such phrase wins.
_MARKED = re.compile(r"(?:answer is|antwort lautet|antwort ist|####)\s*:?\s*\$?\s*(-?\d[\d.,]*)", re.IGNORECASE)


def _rows(file: str) -> list[dict[str, Any]]:
    with (DATA / file).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load(file: str, **_: Any) -> dict[str, Any]:
    """The task's items as lm-eval expects a dataset: {"test": datasets.Dataset}."""
    import datasets

    return {"test": datasets.Dataset.from_list(_rows(file))}


def normalize_number(text: str) -> float | None:
    """'80.000' / '80,000' / '18.' / '1.234,5' → a number; None if `text` holds none."""
    text = text.strip().rstrip(".,")
    text = re.sub(r"[.,](?=\d{3}(?:\D|$))", "", text)  # thousands separators, English or German
    text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def extract_answer(response: str) -> float | None:
    """The final numeric answer of a worked solution: after 'the answer is' (or German), else the last number."""
    marked = _MARKED.findall(response)
    candidates = marked or _NUMBER.findall(response)
    for candidate in reversed(candidates):
        value = normalize_number(candidate)
        if value is not None:
            return value
    return None


def process_math(doc: dict[str, Any], results: list[str]) -> dict[str, int]:
    """exact_match 1 when the extracted answer equals the reference number."""
    predicted = extract_answer(results[0] if results else "")
    target = normalize_number(str(doc["answer"]))
    return {"exact_match": int(predicted is not None and target is not None and abs(predicted - target) < 1e-6)}
