"""OpenAI request bodies (/v1/chat/completions, /v1/completions, /v1/embeddings).

Unknown fields are ignored, so clients that send newer OpenAI fields keep
working. Fields whose shape is easier to explain by hand (`prompt`, `input`,
`response_format`, `tool_choice`, message content) are typed loosely here and
checked in the router, so the 400 names the field in OpenAI's terms.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flexi.api.end_user import EndUser
from flexi.service.options import MAX_REPEAT_PENALTY, MAX_TOKENS_FIELD, MAX_TOP_K, SEED_MAX, SEED_MIN


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


# Union-typed fields are declared `Any` and checked by these validators: Pydantic would
# report a failed union with the member type in the location ("stop.str"), and the
# 400 should name just the field.
def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _stop(value: Any) -> Any:
    if value is None or isinstance(value, str) or _is_str_list(value):
        return value
    raise ValueError("must be a string or a list of strings")


def _keep_alive(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise ValueError('must be a duration like "5m", a number of seconds, 0 or -1')


class FunctionCall(_Base):
    name: str
    arguments: Any = ""  # OpenAI sends a JSON string; a few clients send the object

    @field_validator("arguments")
    @classmethod
    def _arguments(cls, value: Any) -> Any:
        if isinstance(value, (str, dict)):
            return value
        raise ValueError("must be a JSON object encoded as a string")


class ToolCall(_Base):
    id: str | None = None
    type: str = "function"
    function: FunctionCall


class ChatMessage(_Base):
    role: str
    content: Any = None  # a string or a list of content parts
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(p, dict) for p in value):
            return value
        raise ValueError("must be a string or a list of content parts")


class StreamOptions(_Base):
    include_usage: bool = False


class SamplingFields(_Base):
    """Fields shared by chat and text completions (plus vLLM/llama.cpp extensions)."""

    model: str = ""
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    stop: Any = None  # a string or a list of strings
    max_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS_FIELD)  # then clamped to the caller's cap
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int = Field(1, ge=1, le=128)  # OpenAI's own bound; Flexi supports only 1 (a clear 400 names it)
    user: EndUser = None
    priority: int | None = Field(None, ge=-(2**31), le=2**31 - 1)  # vLLM extension: lower is served first (Flexi: <=0 interactive, >0 batch)
    keep_alive: Any = None  # Ollama extension: duration string or seconds
    # vLLM / llama.cpp server extensions
    top_k: int | None = Field(None, ge=0, le=MAX_TOP_K)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0, le=MAX_REPEAT_PENALTY)
    ignore_eos: bool | None = None

    _check_stop = field_validator("stop")(_stop)
    _check_keep_alive = field_validator("keep_alive")(_keep_alive)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(default_factory=list)
    max_completion_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS_FIELD)
    response_format: Any = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)  # OpenAI's bounds


class CompletionRequest(SamplingFields):
    prompt: Any = None  # str or [str]; token arrays and batches are refused with a clear message
    suffix: str | None = None
    echo: bool = False
    max_tokens: int | None = Field(16, ge=0, le=MAX_TOKENS_FIELD)  # OpenAI's default for the legacy endpoint
    logprobs: int | None = Field(None, ge=0, le=5)  # OpenAI's bounds
    best_of: int | None = Field(None, ge=1, le=20)


class EmbeddingsRequest(_Base):
    model: str = ""
    input: Any = None  # str or [str]
    encoding_format: str = "float"
    dimensions: int | None = Field(None, ge=1, le=65536)
    user: EndUser = None
    keep_alive: Any = None
    truncate: bool = True  # Ollama extension

    _check_keep_alive = field_validator("keep_alive")(_keep_alive)
