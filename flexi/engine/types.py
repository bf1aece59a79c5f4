"""The one internal request/response vocabulary.

The Ollama and OpenAI routers translate their dialect into these types; the
scheduler, runners and (later) accounting only ever see these. Keep them
dialect-free: no Ollama or OpenAI field names leak below the API layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

#: Longest input the embedder takes (tokens). Pooled embeddings need the whole input in one ubatch,
#: and llama.cpp then keeps a compute and an output buffer of one logits row per input token: at the
#: model's full context that was ~15 GiB for a 135M model at 32k, which any caller could make the
#: runner hold for good. Retrieval chunks are a few hundred tokens; longer inputs are truncated
#: (`truncate`, the default) or refused with 400.
MAX_EMBED_CONTEXT = 2048
#: most prompt tokens all scoring sequences of a runner feed per step (each needs its row of logits kept);
#: the memory planner counts llama.cpp's output buffer for that many rows
SCORE_CHUNK = 64

FinishReason = Literal["stop", "length", "cancelled", "error"]

#: Most alternatives a request may ask for per token (OpenAI's chat bound; the legacy completions allow 5).
MAX_TOP_LOGPROBS = 20


class TokenLogprob(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One token's log-probability under the model's raw distribution (softmax of the logits at
    temperature 1, before penalties, grammar, temperature or truncation: what OpenAI and vLLM report).
    One type from the runner's wire up to the routers (array-like: a compact frame, no copy on the way).

    `piece`: the token's bytes (a token may hold part of a UTF-8 character); `logprob` None for the first
    prompt token, which nothing precedes; `top`: the most likely tokens at this position, best first, as
    (id, bytes, logprob)."""

    id: int
    piece: bytes
    logprob: float | None
    top: list[tuple[int, bytes, float]] = []


@dataclass
class SamplingParams:
    """Per-sequence sampling; every sequence in a batch carries its own."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One completion, resolved: a fully rendered prompt plus how to continue it, with every limit
    already decided by the generation service (flexi/service/), so the scheduler and runners trust it
    as it is and nothing below changes it."""

    model: str
    prompt: str
    prefix_tokens: list[int] = field(default_factory=list)  # Ollama's `context`: tokens before the prompt
    max_tokens: int = -1  # the output limit; resolved requests always carry a positive one
    stop: list[str] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    grammar: str | None = None  # GBNF; JSON mode and JSON schemas are compiled to this in the API layer
    ignore_eos: bool = False
    num_ctx: int | None = None  # the context the model runs with (None: its configured default)
    keep_alive: float | None = None  # seconds; None = server default, inf = forever, 0 = unload after
    return_tokens: bool = False  # send back prompt+output token ids (Ollama `context`)
    add_bos: bool = True  # False when the prompt was rendered by a chat template that already has BOS text
    user: str = "anonymous"  # whose turn it is in the fair queue (API key or client identity)
    priority: int = 0  # 0 = interactive, 1 = batch; lower is served first
    max_concurrent: int | None = None  # most running + waiting requests of `user` on this model (None = no cap)
    #: the chat itself, for engines that apply the model's template themselves (remote backends); then
    #: `prompt` is only its plain text for sizing and billing. None: `prompt` is what runs.
    messages: list[dict[str, Any]] | None = None
    #: max_tokens is only "until the context is full" (nobody asked for or imposed a limit): a remote engine
    #: that checks prompt + output against its own context (vLLM refuses more) is sent no limit at all
    open_output: bool = False
    #: the output format as asked ("json" or a JSON schema), for remote engines, which constrain it
    #: themselves (`grammar` is its compiled form for the local runner)
    output_format: str | dict[str, Any] | None = None
    #: for remote engines: the tools offered ({"type": "function", "function": {...}}), whether one must be
    #: called (None: the model decides; "required": some tool; else the name of the one to call), and
    #: thinking as asked (True/False or a level); local runners get all of it rendered into `prompt`
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | None = None
    think: bool | str | None = None
    #: log-probabilities of the generated tokens with this many alternatives each (0..MAX_TOP_LOGPROBS;
    #: None: none, and the runner does no extra work at all)
    logprobs: int | None = None
    #: score the prompt too: every prompt token's log-probability given the tokens before it (`PromptLogprobs`)
    prompt_logprobs: bool = False


@dataclass(frozen=True)
class Prefill:
    """A runner slot took the prompt on (`prompt_tokens` of it to process): from now on the request
    is paid for, even if it is cancelled or fails before its first token. Billing consumes this
    event; clients never see it."""

    prompt_tokens: int


@dataclass
class TextChunk:
    """Newly generated text (may be empty while a stop string is being matched)."""

    text: str
    n_tokens: int  # tokens generated so far in total
    logprobs: list[TokenLogprob] | None = None  # of the tokens generated since the last chunk, when asked


@dataclass
class PromptLogprobs:
    """The prompt scored (`GenerationRequest.prompt_logprobs`): one entry per prompt token, in order, the
    first without a logprob. Comes once, after the prefill and before the first generated text."""

    logprobs: list[TokenLogprob]


@dataclass
class ToolCalls:
    """Tool calls an engine returned as structured data (remote engines; local models write them as text,
    which the API layer parses): [{"name", "arguments": dict, "id"?}], Flexi's one internal shape."""

    calls: list[dict[str, Any]]


@dataclass
class ThinkingChunk:
    """Reasoning an engine returned apart from the answer (a remote engine's `thinking`/`reasoning_content`)."""

    text: str


@dataclass
class StatusEvent:
    """Before the first token: the request waits in the queue or for its model to load."""

    kind: Literal["queued", "loading"]
    position: int | None = None  # 1-based place in the queue for "queued"


@dataclass
class GenerationStats:
    """Final figures of one completion; durations in nanoseconds (Ollama's unit)."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    prompt_eval_ns: int
    eval_ns: int
    cached_tokens: int = 0
    tokens: list[int] | None = None  # prompt + output tokens when requested
    load_ns: int = 0
    queue_ns: int = 0


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    inputs: list[str]
    truncate: bool = True
    normalize: bool = True
    num_ctx: int | None = None
    keep_alive: float | None = None
    user: str = "anonymous"
    priority: int = 0
    max_concurrent: int | None = None  # as GenerationRequest.max_concurrent


@dataclass
class EmbeddingResult:
    embeddings: list[list[float]]
    prompt_tokens: int
    total_ns: int
    load_ns: int = 0


class EngineError(Exception):
    """A failure the client should see as a clear message.

    status: the HTTP status to answer with; code: a short machine-readable tag.
    """

    def __init__(self, message: str, status: int = 500, code: str = "engine_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ModelNotFound(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f'model "{name}" not found, try pulling it first', status=404, code="model_not_found")
        self.name = name


class BadRequest(EngineError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, status=400, code="invalid_request")
        self.param = param


class RunnerCrashed(EngineError):
    def __init__(self, message: str = "the model runner stopped unexpectedly; please retry") -> None:
        super().__init__(message, status=500, code="runner_crashed")


class ServerBusy(EngineError):
    def __init__(self, retry_after: int = 1, message: str = "server busy, try again") -> None:
        super().__init__(message, status=503, code="server_busy")
        self.retry_after = retry_after


class TooManyRequests(EngineError):
    """One identity already holds its share of a model's slots and queue (running + waiting).

    The scheduler knows no languages: the access gate turns this into a localized 429."""

    def __init__(self, limit: int, retry_after: int = 2) -> None:
        super().__init__(f"too many requests at once: at most {limit} running or waiting per person and model; "
                         "wait for one to finish", status=429, code="too_many_requests")
        self.limit = limit
        self.retry_after = retry_after


class RequestTimeout(EngineError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request took longer than the server's limit of {seconds:.0f} s (FLEXI_REQUEST_TIMEOUT)",
                         status=504, code="timeout")
