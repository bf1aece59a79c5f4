"""Two small holes found by the review of issue 11's merged work."""

from __future__ import annotations

import pytest

from types import SimpleNamespace
from typing import Any

from flexi.access.caller import Caller
from flexi.access.policy import Limits
from flexi.access.principal import Principal
from flexi.config import load_settings
from flexi.service.generation import Context, GenerationService
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
    class Configured32k:  # a backend whose model is configured (and loaded) with 32k
        def context_for(self, record: Any, num_ctx: int | None) -> int:
            return num_ctx or 32768

        def context_ceiling(self, record: Any) -> int:
            return 32768

    service = GenerationService(load_settings(), None, None, lambda record: Configured32k())  # type: ignore[arg-type]
    student = Caller(Principal(user_id=1, subject="s", pseudonym="p", role="student", locale="en"), "en", "user:1", "/")
    record = SimpleNamespace(name="m")
    assert service.context(student, Limits(max_context=8192), record, None) == Context(None, 8192)  # type: ignore[arg-type]
    assert service.context(student, Limits(max_context=8192), record, 131072) == Context(8192, 8192)  # type: ignore[arg-type]
    assert service.context(student, Limits(), record, None) == Context(None, 32768)  # type: ignore[arg-type]
