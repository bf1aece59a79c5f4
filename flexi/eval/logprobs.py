"""The log-likelihood of a continuation from an OpenAI legacy completion echoed with `logprobs`.

Why characters, not tokens: lm-eval's own completions backend needs the model's tokenizer to know where the
context ends (a Hugging Face download or a vLLM-only /tokenize endpoint). The echoed completion already
says where each token starts in the text (`text_offset`), so the prompt is sent as `context + continuation`
and every token that reaches past the end of the context counts for the continuation. A token straddling
the boundary counts too: leaving it out could leave nothing to score. Pure, so it is tested without lm-eval.
"""

from __future__ import annotations

from typing import Any


class LogprobsMissing(ValueError):
    """The server answered without prompt log-probabilities (no echo+logprobs support)."""


def token_spans(logprobs: dict[str, Any]) -> list[tuple[int, int]]:
    """[start, end) in characters of each echoed token: from `text_offset`, else from the token texts."""
    tokens = [str(t) for t in logprobs.get("tokens") or []]
    offsets = logprobs.get("text_offset")
    if not isinstance(offsets, list) or len(offsets) != len(tokens):
        offsets, pos = [], 0
        for token in tokens:
            offsets.append(pos)
            pos += len(token)
    ends = [*offsets[1:], (offsets[-1] + len(tokens[-1])) if tokens else 0]
    return [(int(s), max(int(s), int(e))) for s, e in zip(offsets, ends, strict=True)]


def continuation_logprob(logprobs: dict[str, Any] | None, context_chars: int, prompt_chars: int) -> tuple[float, bool]:
    """(sum of the continuation's token log-probabilities, whether each of them was the most likely token).

    `context_chars` = len(context), `prompt_chars` = len(context + continuation); tokens from `prompt_chars`
    on were generated after the echo and are ignored. The text's first token has no log-probability (null).
    """
    if not isinstance(logprobs, dict) or not logprobs.get("tokens") or not logprobs.get("token_logprobs"):
        raise LogprobsMissing("no prompt log-probabilities in the answer")
    values = logprobs["token_logprobs"]
    tops = logprobs.get("top_logprobs") or [None] * len(values)
    total, greedy, counted = 0.0, True, 0
    for (start, end), value, top in zip(token_spans(logprobs), values, tops, strict=False):
        if start >= prompt_chars:
            break
        if end <= context_chars or value is None:
            continue
        total += float(value)
        counted += 1
        if isinstance(top, dict) and top and float(value) < max(float(v) for v in top.values()) - 1e-6:
            greedy = False
    if counted == 0:
        raise LogprobsMissing("no log-probability covers the continuation")
    return total, greedy
