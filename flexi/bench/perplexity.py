"""`flexi perplexity`: how well a served model predicts a text, from the runner's own logits.

PPL = exp(−mean log p(token | the tokens before it)) over the text's tokens, read through Flexi's
OpenAI-compatible `/v1/completions` with `echo: true, logprobs: 0, max_tokens: 0` (the prompt's token
logprobs; the first has no prediction and is null). Nothing but the target server is contacted.

Windowing (a model sees at most `ctx` tokens at once), like llama.cpp's `llama-perplexity` but without
wasting half the text: the text is cut into *segments* at whitespace (a place where every byte-level
BPE pre-tokenizer splits anyway, so segment tokens add up to the text's tokens), and the server counts
each segment's tokens (from the answers' `text_offset`: a few requests). Windows of up to `ctx` tokens
are made of whole segments; each next window starts so that about half a window of already scored text
is kept as context, and only its new tokens (the second half) are scored. The first window scores all
its tokens. So every token is scored exactly once, and every token after the first window has at least
about ctx/2 tokens of context — llama-perplexity scores only the second half of every window, also in
the first, and so skips the start of the text.

The windowing and the aggregation are pure functions (`split_units`, `make_segments`, `plan_windows`,
`counts_from_offsets`, `scored_from_offset`, `scored_logprobs`, `perplexity_of`), tested without a server.
A server that sends no `text_offset` still works: then every segment is counted alone and the scored
tokens are the last ones of each window.
"""

from __future__ import annotations

import math
import re
import time
from bisect import bisect_right
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from flexi.bench.clients import error_text
from flexi.bench.loadtest import LoadTestError
from flexi.i18n import t

MIN_CTX = 32
DEFAULT_CTX = 512  # llama-perplexity's default, so figures compare with the usual tables
SEGMENTS_PER_WINDOW = 8  # segments of about ctx/8 tokens: fine enough steps for the windows
CHARS_PER_TOKEN_GUESS = 2.0  # low on purpose (German in an English vocabulary): segments come out small
PROMPTS_PER_REQUEST = 16
SHIPPED_TEXTS = ("de", "en")
_UNIT = re.compile(r"\s*\S+|\s+")


class PerplexityError(LoadTestError):
    """The measurement cannot run or the server's answer is unusable; `str()` is user-facing."""


@dataclass(frozen=True)
class Window:
    """Segments [start, end) are sent; the tokens of segments [score_from, end) are scored."""

    start: int
    end: int
    score_from: int


@dataclass
class PerplexityResult:
    perplexity: float
    text: str
    ctx: int
    text_tokens: int
    scored_tokens: int
    windows: int
    mismatched_windows: int  # windows whose token count differed from the segments' sum (tokenizer quirk)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- texts ------------------------------------------------------------------------------------
def load_text(spec: str) -> tuple[str, str]:
    """'de' / 'en' (shipped texts) or a path → (label, text); PerplexityError if missing or empty."""
    if spec in SHIPPED_TEXTS:
        text = resources.files("flexi.bench").joinpath("texts", f"{spec}.txt").read_text(encoding="utf-8")
        return spec, text.strip()
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PerplexityError(t("ppl_text_missing", path=spec)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PerplexityError(t("ppl_text_unreadable", path=spec, detail=str(exc))) from None
    if not text.strip():
        raise PerplexityError(t("ppl_text_empty", path=spec))
    return str(path), text.strip()


def check_ctx(ctx: int) -> None:
    if ctx < MIN_CTX:
        raise PerplexityError(t("ppl_ctx_small", ctx=ctx, min=MIN_CTX))


# --- pure windowing and aggregation ---------------------------------------------------------------
def split_units(text: str) -> list[str]:
    """Whitespace + one word each; joined they give the text back exactly."""
    return _UNIT.findall(text)


def make_segments(text: str, ctx: int, chars_per_token: float = CHARS_PER_TOKEN_GUESS) -> list[str]:
    """Consecutive runs of whole units of about ctx/SEGMENTS_PER_WINDOW tokens (estimated from characters)."""
    target = max(1, int(ctx / SEGMENTS_PER_WINDOW * chars_per_token))
    segments: list[str] = []
    current = ""
    for unit in split_units(text):
        if current and len(current) + len(unit) > target:
            segments.append(current)
            current = ""
        current += unit
    if current:
        segments.append(current)
    return segments


def _fill(counts: list[int], start: int, budget: int) -> int:
    """The largest end such that the segments [start, end) hold at most `budget` tokens."""
    total, end = 0, start
    while end < len(counts) and total + counts[end] <= budget:
        total += counts[end]
        end += 1
    return end


def plan_windows(counts: list[int], ctx: int) -> list[Window]:
    """Windows over segments with token counts `counts` (see the module doc); one token of room is kept
    for a beginning-of-sequence token the server may add."""
    budget = ctx - 1
    if not counts:
        return []
    if max(counts) > budget // 2:
        raise PerplexityError(t("ppl_segment_long", tokens=max(counts), ctx=ctx))
    end = _fill(counts, 0, budget)
    windows = [Window(0, end, 0)]
    while end < len(counts):
        start = end
        while start > 0 and sum(counts[start - 1:end]) <= budget // 2:
            start -= 1
        new_end = _fill(counts, start, budget)
        windows.append(Window(start, new_end, end))
        end = new_end
    return windows


def scored_logprobs(token_logprobs: list[float | None], new_tokens: int | None) -> list[float]:
    """The logprobs a window contributes: its last `new_tokens` (all when None), nulls dropped."""
    chosen = token_logprobs if new_tokens is None else token_logprobs[max(0, len(token_logprobs) - new_tokens):]
    return [float(lp) for lp in chosen if lp is not None]


def perplexity_of(logprobs: list[float]) -> float:
    """exp(−mean logprob); PerplexityError for nothing to average."""
    if not logprobs:
        raise PerplexityError(t("ppl_no_tokens"))
    return math.exp(-sum(logprobs) / len(logprobs))


def bos_tokens(n_first: int, n_second: int, n_both: int) -> int:
    """How many tokens the server adds in front of every prompt (0 or 1), from two segments counted alone
    and together: alone each carries them, together once."""
    return min(1, max(0, n_first + n_second - n_both))


# --- talking to the server -------------------------------------------------------------------------
@dataclass
class Target:
    url: str
    model: str
    api_key: str | None = None
    timeout: float = 600.0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


async def prompt_logprobs(client: httpx.AsyncClient, target: Target, prompts: list[str]) -> list[list[float | None]]:
    """token_logprobs of each prompt (echo, no generation), in order; PerplexityError otherwise."""
    return [lps for lps, _ in await prompt_tokens(client, target, prompts)]


async def prompt_tokens(client: httpx.AsyncClient, target: Target,
                        prompts: list[str]) -> list[tuple[list[float | None], list[int] | None]]:
    """(token_logprobs, text_offset or None) of each prompt, in order; PerplexityError otherwise."""
    out: list[tuple[list[float | None], list[int] | None]] = []
    for i in range(0, len(prompts), PROMPTS_PER_REQUEST):
        batch = prompts[i:i + PROMPTS_PER_REQUEST]
        body = {"model": target.model, "prompt": batch, "echo": True, "logprobs": 0, "max_tokens": 0,
                "temperature": 0}
        try:
            response = await client.post(target.url + "/v1/completions", json=body, headers=target.headers(),
                                         timeout=target.timeout)
        except httpx.TransportError as exc:
            raise PerplexityError(t("unreachable", url=target.url, detail=str(exc) or type(exc).__name__)) from None
        if response.status_code != 200:
            detail = error_text(response.content) or response.reason_phrase
            raise PerplexityError(t("ppl_http_error", model=target.model, status=response.status_code, detail=detail))
        out += _parse_choices(response, len(batch))
    return out


def _parse_choices(response: httpx.Response, expected: int) -> list[tuple[list[float | None], list[int] | None]]:
    try:
        choices = sorted(response.json()["choices"], key=lambda c: c.get("index", 0))
        parsed = []
        for choice in choices:
            logprobs = choice["logprobs"]
            offsets = logprobs.get("text_offset")
            lps = logprobs["token_logprobs"]
            ok = isinstance(offsets, list) and len(offsets) == len(lps) and all(isinstance(o, int) for o in offsets)
            parsed.append((lps, offsets if ok else None))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise PerplexityError(t("ppl_no_logprobs")) from None
    if len(parsed) != expected or not all(isinstance(lps, list) and lps for lps, _ in parsed):
        raise PerplexityError(t("ppl_no_logprobs"))
    return parsed


def counts_from_offsets(segments: list[str], offsets: list[int]) -> list[int]:
    """Tokens per segment of a prompt made of `segments`, from each token's character offset. A token of no
    text that the server puts in front (BOS: it and the first real token both at offset 0) is not counted."""
    if len(offsets) > 1 and offsets[0] == offsets[1] == 0:
        offsets = offsets[1:]
    starts, pos = [], 0
    for segment in segments:
        starts.append(pos)
        pos += len(segment)
    counts = [0] * len(segments)
    for offset in offsets:
        counts[max(0, bisect_right(starts, offset) - 1)] += 1
    return counts


def scored_from_offset(token_logprobs: list[float | None], offsets: list[int], first_char: int) -> list[float]:
    """The logprobs of the tokens that start at or after character `first_char` of the prompt, nulls dropped."""
    return [float(lp) for lp, off in zip(token_logprobs, offsets) if lp is not None and off >= first_char]


async def _segment_counts(client: httpx.AsyncClient, target: Target, segments: list[str]) -> tuple[list[int], int]:
    """(tokens per segment, tokens the server adds in front of a prompt). With `text_offset` in the answers
    (OpenAI's shape) a few prompts of SEGMENTS_PER_WINDOW segments each suffice; without, every segment is
    counted alone and a probe of the first two together tells whether a BOS token is added."""
    chunks = [segments[i:i + SEGMENTS_PER_WINDOW] for i in range(0, len(segments), SEGMENTS_PER_WINDOW)]
    answers = await prompt_tokens(client, target, ["".join(chunk) for chunk in chunks])
    if all(offsets is not None for _, offsets in answers):
        return [n for chunk, (_, offsets) in zip(chunks, answers) for n in counts_from_offsets(chunk, offsets or [])], 0
    probe = [segments[0] + segments[1]] if len(segments) > 1 else []
    counted = await prompt_logprobs(client, target, segments + probe)
    raw = [len(lp) for lp in counted[:len(segments)]]
    bos = bos_tokens(raw[0], raw[1], len(counted[-1])) if probe else 0
    return [max(0, n - bos) for n in raw], bos


async def measure(client: httpx.AsyncClient, target: Target, label: str, text: str,
                  ctx: int = DEFAULT_CTX) -> PerplexityResult:
    """Perplexity of `target.model` on `text` with windows of `ctx` tokens."""
    check_ctx(ctx)
    started = time.perf_counter()
    segments = make_segments(text, ctx)
    counts, bos = await _segment_counts(client, target, segments)
    total = sum(counts)
    if total < ctx:
        raise PerplexityError(t("ppl_text_short", text=label, tokens=total, ctx=ctx))
    windows = plan_windows(counts, ctx)
    results = await prompt_tokens(client, target, ["".join(segments[w.start:w.end]) for w in windows])
    logprobs: list[float] = []
    mismatched = 0
    for window, (token_logprobs, offsets) in zip(windows, results):
        new = sum(counts[window.score_from:window.end])
        if offsets is not None:  # exact: the tokens that start in the new part of the window
            first_char = len("".join(segments[window.start:window.score_from]))
            scored = scored_from_offset(token_logprobs, offsets, first_char)
            mismatched += abs(sum(1 for o in offsets if o >= first_char) - new) > 1
        else:
            if len(token_logprobs) != bos + sum(counts[window.start:window.end]):
                mismatched += 1
            scored = scored_logprobs(token_logprobs, None if window.score_from == 0 else new)
        logprobs += scored
    return PerplexityResult(perplexity=perplexity_of(logprobs), text=label, ctx=ctx, text_tokens=total,
                            scored_tokens=len(logprobs), windows=len(windows), mismatched_windows=mismatched,
                            seconds=round(time.perf_counter() - started, 2))
