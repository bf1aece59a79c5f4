"""FlexiCompletions through lm-eval's real pipeline (the shipped multiple-choice task) against a fake
/v1/completions that answers like the OpenAI legacy API with echo + logprobs. No tokenizer anywhere."""

from __future__ import annotations

import json
import re

import httpx
import pytest

pytest.importorskip("lm_eval")

from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from flexi.eval.backend import FlexiCompletions
from flexi.eval.errors import EvalError
from flexi.eval.tasks import TASK_DIR

ITEMS = [json.loads(line) for line in (TASK_DIR / "data" / "truthfulqa_mc.jsonl").read_text(encoding="utf-8").splitlines()]
CORRECT = {item["question"]: item["choices"][item["label"]] for item in ITEMS}


def fake_completions(prefer_correct: bool, seen: list[dict]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        choices = []
        for i, prompt in enumerate(body["prompt"]):
            question = prompt.split("\n", 1)[0].removeprefix("Q: ")
            good = prompt.endswith(" " + CORRECT[question])
            value = -0.1 if good == prefer_correct else -3.0
            pieces = [m.group(0) for m in re.finditer(r"\s*\S+", prompt)] + [" generated"]
            offsets, pos = [], 0
            for piece in pieces:
                offsets.append(pos)
                pos += len(piece)
            values = [None] + [value] * (len(pieces) - 1)
            choices.append({"index": i, "text": "".join(pieces), "finish_reason": "length", "logprobs": {
                "tokens": pieces, "token_logprobs": values, "text_offset": offsets,
                "top_logprobs": [None] + [{p: v} for p, v in zip(pieces[1:], values[1:])]}})
        return httpx.Response(200, json={"object": "text_completion", "choices": choices})
    return httpx.MockTransport(handler)


def run(prefer_correct: bool, seen: list[dict], concurrent: int = 1) -> dict:
    lm = FlexiCompletions("http://flexi.test/v1/completions", "smollm2:135m", {"Accept": "application/json"},
                          transport=fake_completions(prefer_correct, seen), concurrent=concurrent)
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
    return simple_evaluate(model=lm, tasks=["flexi_truthfulqa_mc"], limit=5, task_manager=manager,
                           log_samples=False, bootstrap_iters=0)


def test_the_most_likely_choice_wins():
    seen: list[dict] = []
    assert run(True, seen)["results"]["flexi_truthfulqa_mc"]["acc,none"] == 1.0
    body = seen[0]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1 and body["temperature"] == 0
    assert isinstance(body["prompt"], list) and 1 < len(body["prompt"]) <= 8  # several choices per request
    assert all(p.startswith("Q: ") and "\nA: " in p for b in seen for p in b["prompt"])


def test_a_model_preferring_wrong_answers_scores_zero():
    assert run(False, [])["results"]["flexi_truthfulqa_mc"]["acc,none"] == 0.0


def test_concurrent_requests_keep_each_answer_with_its_prompt():
    seen: list[dict] = []
    assert run(True, seen, concurrent=3)["results"]["flexi_truthfulqa_mc"]["acc,none"] == 1.0
    assert len(seen) > 1


def test_a_server_without_logprobs_is_a_clear_error():
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "logprobs are not supported yet"}})

    lm = FlexiCompletions("http://flexi.test/v1/completions", "m", {}, transport=httpx.MockTransport(refuse))
    with pytest.raises(EvalError, match="logprobs are not supported yet"):
        simple_evaluate(model=lm, tasks=["flexi_truthfulqa_mc"], limit=1,
                        task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False),
                        log_samples=False, bootstrap_iters=0)
