"""The continuation's log-likelihood from an echoed OpenAI legacy completion, found by character offsets."""

from __future__ import annotations

import pytest

from flexi.eval.logprobs import LogprobsMissing, continuation_logprob, token_spans


def echo(tokens: list[str], values: list[float | None], tops: list[dict[str, float] | None] | None = None,
         offsets: bool = True) -> dict:
    out: dict = {"tokens": tokens, "token_logprobs": values,
                 "top_logprobs": tops if tops is not None else [None if v is None else {t: v} for t, v in zip(tokens, values)]}
    if offsets:
        pos, starts = 0, []
        for token in tokens:
            starts.append(pos)
            pos += len(token)
        out["text_offset"] = starts
    return out


def test_sums_only_the_continuation_and_ignores_the_generated_token():
    # "Q: sky?\nA:" + " blue" and one generated token after the echo
    lp = echo(["Q", ":", " sky", "?\n", "A", ":", " blue", " sky"], [None, -1.0, -2.0, -0.5, -0.1, -0.2, -1.5, -9.0])
    total, greedy = continuation_logprob(lp, len("Q: sky?\nA:"), len("Q: sky?\nA: blue"))
    assert total == pytest.approx(-1.5) and greedy is True


def test_a_token_straddling_the_boundary_counts_for_the_continuation():
    lp = echo(["ab", "cd"], [None, -0.7])
    assert continuation_logprob(lp, 3, 4) == (pytest.approx(-0.7), True)  # context "abc", continuation "d"


def test_not_greedy_when_another_token_was_more_likely():
    lp = echo(["A:", " yes", " no"], [None, -2.0, -0.1], tops=[None, {" no": -0.3, " yes": -2.0}, {" no": -0.1}])
    total, greedy = continuation_logprob(lp, 2, 6)
    assert total == pytest.approx(-2.0) and greedy is False


def test_offsets_from_token_texts_when_text_offset_is_missing():
    lp = echo(["Hallo", " Welt", "!"], [None, -0.5, -0.25], offsets=False)
    assert token_spans(lp) == [(0, 5), (5, 10), (10, 11)]
    assert continuation_logprob(lp, 5, 11)[0] == pytest.approx(-0.75)


def test_text_offsets_win_over_token_lengths():
    # a byte-fallback token shown as "bytes:\\xc3" is longer than the character it stands for
    lp = {"tokens": ["Gr", "bytes:\\xc3\\xbc", "n"], "token_logprobs": [None, -1.0, -0.5], "text_offset": [0, 2, 3]}
    assert token_spans(lp) == [(0, 2), (2, 3), (3, 4)]
    assert continuation_logprob(lp, 3, 4)[0] == pytest.approx(-0.5)  # context "Grü", continuation "n"


@pytest.mark.parametrize("logprobs", [None, {}, {"tokens": ["a"], "token_logprobs": []}, "nonsense"])
def test_missing_logprobs_are_an_error(logprobs):
    with pytest.raises(LogprobsMissing):
        continuation_logprob(logprobs, 1, 2)


def test_nothing_covering_the_continuation_is_an_error():
    with pytest.raises(LogprobsMissing):
        continuation_logprob(echo(["abc"], [None]), 1, 3)  # only the first token, which has no log-probability
