"""Token log-probabilities in the dialects' shapes (both routers use these; neither imports the other).

The numbers are the runner's (`TokenLogprob`: the model's raw distribution, see flexi/engine/runner/
logprobs.py); here they only get their wire shape:

- OpenAI chat and Ollama: a list of `{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
  "bytes"}]}`, `top_logprobs` exactly the N most likely tokens;
- OpenAI's legacy completions: `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`, where each
  `top_logprobs` entry is a dict token → logprob of the N most likely tokens plus the chosen one (so it
  may hold N + 1), and the first prompt token of an echo has null for both.

A token that is not valid UTF-8 on its own (part of a character) is written `bytes:\\xe2\\x80`, as OpenAI
does; its `bytes` are exact.
"""

from __future__ import annotations

import codecs
from typing import Any

from flexi.engine.types import MAX_TOP_LOGPROBS, BadRequest, TokenLogprob

#: most prompts one /v1/completions request may carry (each is a generation of its own)
MAX_PROMPTS = 64
MAX_LIST_SIZE = 131_072  # characters (or token ids) of all prompts of one list together: bounds the memory and the
# time one scored (echo + logprobs) answer takes to build and send (~32k tokens ≈ 7 MB of JSON), so one request
# cannot hold the event loop that serves everyone; a single prompt is bounded by the model's context instead


def token_text(piece: bytes) -> str:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in piece)


def _alt(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": token_text(piece), "logprob": logprob, "bytes": list(piece)}


def content_entries(entries: list[TokenLogprob]) -> list[dict[str, Any]]:
    """OpenAI chat's `logprobs.content` and Ollama's `logprobs`: one object per generated token."""
    return [{**_alt(e.piece, e.logprob if e.logprob is not None else 0.0),
             "top_logprobs": [_alt(piece, lp) for _, piece, lp in e.top]} for e in entries]


def top_count(logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """The alternatives per token a chat request asks for (OpenAI chat and Ollama alike): None when it asks
    for no logprobs. `top_logprobs` without `logprobs: true` is refused, as OpenAI and vLLM do."""
    if top_logprobs is not None and not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise BadRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs")
    if not logprobs:
        if top_logprobs:
            raise BadRequest("top_logprobs needs logprobs set to true", param="top_logprobs")
        return None
    return top_logprobs or 0


class LegacyLogprobs:
    """Builds `/v1/completions` logprobs objects, in parts for streaming, with `text_offset` counted in
    characters of the returned text across all parts (the prompt's, when echoed, first)."""

    def __init__(self, start: int = 0) -> None:
        self._offset = start
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def part(self, entries: list[TokenLogprob]) -> dict[str, Any]:
        tokens: list[str] = []
        values: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        offsets: list[int] = []
        for e in entries:
            text = token_text(e.piece)
            tokens.append(text)
            values.append(e.logprob)
            offsets.append(self._offset)
            self._offset += len(self._decoder.decode(e.piece))
            if e.logprob is None:
                tops.append(None)
                continue
            top = {token_text(piece): lp for _, piece, lp in e.top}
            top.setdefault(text, e.logprob)  # OpenAI: the chosen token is always there (up to N + 1 entries)
            tops.append(top)
        return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}

    def skip(self, text: str) -> None:
        """Text returned without token entries (an echoed prompt that was not scored)."""
        self._offset += len(text)


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One legacy logprobs object of several parts (prompt, then output)."""
    out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for p in parts:
        for key in out:
            out[key] += p[key]
    return out
