"""OpenAI request bodies (/v1/chat/completions, /v1/completions, /v1/embeddings).

Unknown fields are ignored, so clients that send newer OpenAI fields keep
working. Fields whose shape is easier to explain by hand (`prompt`, `input`,
`response_format`, `tool_choice`, message content) are typed loosely here and
checked in the router, so the 400 names the field in OpenAI's terms.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionCall(_Base):
    name: str
    arguments: str | dict[str, Any] = ""  # OpenAI sends a JSON string; a few clients send the object


class ToolCall(_Base):
    id: str | None = None
    type: str = "function"
    function: FunctionCall


class ChatMessage(_Base):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Base):
    include_usage: bool = False


class SamplingFields(_Base):
    """Fields shared by chat and text completions (plus vLLM/llama.cpp extensions)."""

    model: str = ""
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(None, ge=0)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int = Field(1, ge=1)
    user: str | None = None
    keep_alive: str | int | float | None = None  # Ollama extension
    # vLLM / llama.cpp server extensions
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0)
    ignore_eos: bool | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(default_factory=list)
    max_completion_tokens: int | None = Field(None, ge=0)
    response_format: Any = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CompletionRequest(SamplingFields):
    prompt: Any = None  # str or [str]; token arrays and batches are refused with a clear message
    suffix: str | None = None
    echo: bool = False
    max_tokens: int | None = Field(16, ge=0)  # OpenAI's default for the legacy endpoint
    logprobs: int | None = None
    best_of: int | None = Field(None, ge=1)


class EmbeddingsRequest(_Base):
    model: str = ""
    input: Any = None  # str or [str]
    encoding_format: str = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    keep_alive: str | int | float | None = None
    truncate: bool = True  # Ollama extension
