"""Wire format between server and runner: typed messages, one JSON array per line over a Unix socket.

Every frame is `[id, message]\\n`. Many requests are multiplexed over one connection by `id`; the
message is a tagged struct, so both ends agree on its fields and a malformed frame fails with a
message that names what is wrong (`ProtocolError`), never a `KeyError` deep inside.

Server → runner (`Request`, tag `op`): generate, cancel, embed, tokenize, detokenize.
Runner → server (`Event`, tag `ev`): prefill, scored, text, done, error, embedded, tokenized, detokenized.
"prefill": a slot took the prompt, with its `prompt_tokens`; sent before the prefill runs, so the
server can bill a request whose client leaves before the first token. `FINAL` events end a request.

Why JSON lines and not MessagePack: with msgspec both are typed and fast (text event encode+decode
0.26 µs JSON, 0.22 µs msgpack; stdlib json on dicts was 3.9 µs), but msgpack needs length-prefixed
frames, and reading those cost more than splitting lines (0.93 vs 0.81 µs per event with the framing).
So the frame format stays what it was and a runner socket can still be read by eye.

The runner's stdout carries one line `READY_PREFIX + RunnerInfo as JSON` once it accepts connections.
"""

from __future__ import annotations

from typing import Union

import msgspec

from flexi.engine.types import EmbeddingRequest, FinishReason, GenerationRequest, GenerationStats, TokenLogprob

READY_PREFIX = "FLEXI-RUNNER-READY "
MAX_LINE = 64 * 1024 * 1024  # embeddings of big batches are long lines


class ProtocolError(ValueError):
    """A frame that is not a valid message; the text says which field or tag is wrong."""


# gc=False: messages are plain data (no reference cycles), so the garbage collector need not track the
# thousands of text events a busy runner sends per second. omit_defaults keeps frames short.
class _Request(msgspec.Struct, tag_field="op", frozen=True, forbid_unknown_fields=True, omit_defaults=True,
               gc=False):
    pass


class _Event(msgspec.Struct, tag_field="ev", frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    pass


# --- server → runner ------------------------------------------------------------------------------
class Sampling(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Per-sequence sampling, field for field `SamplingParams` (its defaults are the only ones: none here)."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_penalty: float
    repeat_last_n: int
    presence_penalty: float
    frequency_penalty: float
    seed: int | None


class Generate(_Request, tag="generate"):
    prompt: str
    sampling: Sampling
    prefix_tokens: list[int] = []  # Ollama's `context`: tokens before the prompt
    max_tokens: int = -1  # -1: until the context is full
    stop: list[str] = []
    grammar: str | None = None  # GBNF
    ignore_eos: bool = False
    return_tokens: bool = False  # send back prompt+output token ids with `done`
    add_bos: bool = True  # carried for the engine; today it adds BOS exactly when there is no prefix
    logprobs: int = -1  # ≥ 0: every generated token's logprob with this many alternatives; -1: none
    score_prompt: bool = False  # send every prompt token's logprob (`Scored`); prefills the whole prompt


class Cancel(_Request, tag="cancel"):
    """Stop the request with this frame's id; its slot is free at the next decode step."""


class Embed(_Request, tag="embed"):
    inputs: list[str]
    truncate: bool = True
    normalize: bool = True


class Tokenize(_Request, tag="tokenize"):
    text: str
    add_special: bool = False


class Detokenize(_Request, tag="detokenize"):
    tokens: list[int]


Request = Union[Generate, Cancel, Embed, Tokenize, Detokenize]


# --- runner → server ------------------------------------------------------------------------------
class Prefill(_Event, tag="prefill"):
    prompt_tokens: int
    cached_tokens: int = 0
    kv: tuple[int, int] | None = None  # KV cells (held by running requests, held in all) once admitted: the KV-cache metric


class Scored(_Event, tag="scored"):
    """The prompt's tokens with their logprobs (`Generate.score_prompt`), once its prefill is done."""

    logprobs: list[TokenLogprob]


class Text(_Event, tag="text"):
    text: str  # may be empty while a stop string is being matched
    n: int  # tokens generated so far in total
    logprobs: list[TokenLogprob] | None = None  # the token(s) behind this text, when asked


class Done(_Event, tag="done"):
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    prompt_eval_ns: int
    eval_ns: int
    cached_tokens: int = 0
    tokens: list[int] | None = None  # prompt + output tokens when requested
    kv: tuple[int, int] | None = None  # KV cells (held by running requests, held in all) once this one ended


class Error(_Event, tag="error"):
    message: str
    status: int = 500  # the HTTP status the server answers with


class Embedded(_Event, tag="embedded"):
    embeddings: list[list[float]]
    prompt_tokens: int


class Tokenized(_Event, tag="tokenized"):
    tokens: list[int]


class Detokenized(_Event, tag="detokenized"):
    text: str


Event = Union[Prefill, Scored, Text, Done, Error, Embedded, Tokenized, Detokenized]
FINAL = (Done, Error, Embedded, Tokenized, Detokenized)  # the last event of a request


class RunnerInfo(msgspec.Struct, frozen=True):
    """What a runner reports once it is ready (unknown fields are ignored: this line is for people too)."""

    pid: int
    n_ctx: int  # context per slot, after clamping to what the model was trained for
    n_parallel: int
    n_ctx_train: int
    n_embd: int
    n_vocab: int


# --- the one codec ----------------------------------------------------------------------------------
_encoder = msgspec.json.Encoder()
_requests = msgspec.json.Decoder(tuple[int, Request])
_events = msgspec.json.Decoder(tuple[int, Event])
_frame_id = msgspec.json.Decoder(tuple[int, msgspec.Raw])
_info = msgspec.json.Decoder(RunnerInfo)


def encode(req_id: int, message: Request | Event) -> bytes:
    """One frame: `[id, message]` and a newline."""
    return _encoder.encode((req_id, message)) + b"\n"


def decode_request(line: bytes) -> tuple[int, Request]:
    """Read a frame the server sent; `ProtocolError` names what is wrong."""
    try:
        return _requests.decode(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed request: {exc}") from None


def decode_event(line: bytes) -> tuple[int, Event]:
    """Read a frame the runner sent; `ProtocolError` names what is wrong."""
    try:
        return _events.decode(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed event: {exc}") from None


def frame_id(line: bytes) -> int | None:
    """The id of a frame whose message is malformed, so that its sender can still be answered."""
    try:
        return _frame_id.decode(line)[0]
    except msgspec.DecodeError:
        return None


def ready_line(info: RunnerInfo) -> str:
    return READY_PREFIX + _encoder.encode(info).decode()


def parse_ready(line: str) -> RunnerInfo | None:
    """The runner's facts from its READY line; None for any other line of output."""
    if not line.startswith(READY_PREFIX):
        return None
    try:
        return _info.decode(line[len(READY_PREFIX):])
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed READY line: {exc}") from None


# --- conversions from and to the internal vocabulary ----------------------------------------------------
def generate_message(req: GenerationRequest) -> Generate:
    """What a runner needs of a resolved generation request (its limits are final: flexi/service/)."""
    return Generate(
        prompt=req.prompt, sampling=Sampling(**vars(req.sampling)), prefix_tokens=req.prefix_tokens,
        max_tokens=req.max_tokens, stop=req.stop, grammar=req.grammar,
        ignore_eos=req.ignore_eos, return_tokens=req.return_tokens, add_bos=req.add_bos,
        logprobs=-1 if req.logprobs is None else req.logprobs, score_prompt=req.prompt_logprobs)


def embed_message(req: EmbeddingRequest) -> Embed:
    return Embed(inputs=req.inputs, truncate=req.truncate, normalize=req.normalize)


def generation_stats(done: Done, load_ns: int = 0, queue_ns: int = 0) -> GenerationStats:
    return GenerationStats(
        finish_reason=done.finish_reason, prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
        prompt_eval_ns=done.prompt_eval_ns, eval_ns=done.eval_ns, cached_tokens=done.cached_tokens,
        tokens=done.tokens, load_ns=load_ns, queue_ns=queue_ns)
