"""Ollama-style durations ("5m", "1h30m", "300", -1) as seconds.

`keep_alive` accepts Go duration strings, plain numbers of seconds, and
negative values meaning "forever". `None` means "use the default".
"""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")

FOREVER = math.inf


class DurationError(ValueError):
    """A duration string that cannot be understood."""


def parse_duration(value: str | int | float | None) -> float | None:
    """Return seconds (math.inf for "forever"), or None when value is None.

    Negative numbers and strings such as "-1" or "-1m" mean keep forever, as in Ollama.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}")
    if not isinstance(value, (int, float, str)):
        raise DurationError(f"invalid duration {value!r}; use e.g. \"5m\", \"1h\", 0 or -1")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            raise DurationError("invalid duration NaN")
        return FOREVER if value < 0 else float(value)
    text = value.strip()
    if not text:
        raise DurationError("empty duration")
    negative = text.startswith("-")
    body = text[1:] if negative else text
    try:
        seconds = float(body)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _PART.finditer(body):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(body) or pos == 0:
            raise DurationError(f'invalid duration "{value}"; use e.g. "5m", "1h", "30s", 0 or -1') from None
    if not math.isfinite(seconds):  # "nan" would make a model never expire (and /api/ps fail), "inf" is -1's job
        raise DurationError(f'invalid duration "{value}"; use e.g. "5m", "1h", "30s", 0 or -1')
    if negative and seconds > 0:
        return FOREVER
    return seconds


def format_duration(seconds: float) -> str:
    """Human-readable form for CLI tables ("4 minutes from now" style is left to callers)."""
    if math.isinf(seconds):
        return "Forever"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} seconds"
    if seconds < 3600:
        return f"{seconds // 60} minutes"
    return f"{seconds // 3600} hours"
