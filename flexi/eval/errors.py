"""The one error of `flexi eval` that stops a run or a task; its message is for people (localized)."""

from __future__ import annotations


class EvalError(RuntimeError):
    """A run that cannot start or go on, or a task that cannot be scored."""
