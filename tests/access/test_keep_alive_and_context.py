"""Two small holes found by the review of issue 11's merged work."""

from __future__ import annotations

import pytest

from flexi.access.gate import _capped_context
from flexi.access.policy import Limits
from flexi.durations import DurationError, parse_duration


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400s", "1e308h"])
def test_keep_alive_nan_or_infinite_string_is_refused(value: str) -> None:
    """`keep_alive: "nan"` made a model never expire (the reaper's `now >= nan` is never true) and
    /api/ps answer 500 while it was loaded."""
    with pytest.raises(DurationError):
        parse_duration(value)


def test_keep_alive_forever_still_works() -> None:
    assert parse_duration("-1") == parse_duration(-1) == float("inf")
    assert parse_duration("1.5m") == 90


def test_a_capped_callers_first_request_does_not_shrink_the_model_for_everyone() -> None:
    """A student (8k cap) asking nothing special on a server configured for 32k: the model runs at its
    configured context (num_ctx stays None), the student may use 8k of it."""
    assert _capped_context(Limits(max_context=8192), None, 32768) == (None, 8192)
    assert _capped_context(Limits(max_context=8192), 131072, 32768) == (8192, 8192)
    assert _capped_context(Limits(), None, 32768) == (None, 32768)
