"""Rebuild the small task subsets shipped in flexi/eval/tasks/data/ from the original files.

Usage: python scripts/build_eval_subsets.py GSM8K_TEST_JSONL MGSM_DE_TSV TRUTHFULQA_CSV [N]

The selection is reproducible: the first N items of each file (N = 50), and for TruthfulQA the answer
choices of item i are shuffled with random.Random(f"flexi-{i}"). Sources and licences:
flexi/eval/tasks/ATTRIBUTION.md.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "flexi" / "eval" / "tasks" / "data"


def _write(name: str, rows: list[dict]) -> None:
    with (OUT / name).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def gsm8k(path: Path, n: int) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()[:n]):
        item = json.loads(line)
        rows.append({"id": i, "question": item["question"],
                     "answer": item["answer"].rsplit("####", 1)[1].strip().replace(",", "")})
    return rows


def mgsm(path: Path, n: int) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()[:n]):
        question, answer = line.split("\t")
        rows.append({"id": i, "question": question.strip(), "answer": answer.strip()})
    return rows


def truthfulqa(path: Path, n: int) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for i, item in enumerate(list(csv.DictReader(f))[:n]):
            wrong = [a.strip() for a in item["Incorrect Answers"].split(";") if a.strip()][:3]
            choices = [item["Best Answer"].strip(), *wrong]
            order = list(range(len(choices)))
            random.Random(f"flexi-{i}").shuffle(order)
            rows.append({"id": i, "question": item["Question"].strip(), "choices": [choices[k] for k in order],
                         "label": order.index(0)})
    return rows


def main() -> None:
    gsm, mgsm_de, tqa = map(Path, sys.argv[1:4])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    _write("gsm8k.jsonl", gsm8k(gsm, n))
    _write("mgsm_de.jsonl", mgsm(mgsm_de, n))
    _write("truthfulqa_mc.jsonl", truthfulqa(tqa, n))


if __name__ == "__main__":
    main()
