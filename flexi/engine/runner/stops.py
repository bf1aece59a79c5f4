"""Stop strings over a token stream: emit text as early as possible, never part of a stop."""

from __future__ import annotations


class StopMatcher:
    """Feed generated text; get back what is safe to emit and whether a stop was hit.

    Text that could be the beginning of a stop string is held back until the
    next piece shows whether it really is one.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        self._pending += text
        first = -1
        for stop in self.stops:
            at = self._pending.find(stop)
            if at != -1 and (first == -1 or at < first):
                first = at
        if first != -1:
            out = self._pending[:first]
            self._pending = ""
            return out, True
        hold = self._longest_partial_suffix()
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out

    def _longest_partial_suffix(self) -> int:
        best = 0
        text = self._pending
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
