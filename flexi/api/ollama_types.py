"""Ollama request bodies (docs/api.md). Unknown fields are ignored, like Ollama."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flexi.api.end_user import EndUser
from flexi.service.options import ModelOptions


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class ToolCallFunction(_Base):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(_Base):
    function: ToolCallFunction


class Message(_Base):
    role: str
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class _ModelRef(_Base):
    model: str = ""
    name: str | None = None  # older clients send `name`

    @model_validator(mode="after")
    def _name_alias(self) -> "_ModelRef":
        if not self.model and self.name:
            self.model = self.name
        return self


class _Generation(_ModelRef):
    format: str | dict[str, Any] | None = None
    options: ModelOptions | None = None
    stream: bool = True
    keep_alive: str | int | float | None = None
    think: bool | Literal["low", "medium", "high"] | None = None
    user: EndUser = None  # not Ollama's: Moodle's Ollama provider sends its user hash here, as OpenAI's `user`
    logprobs: bool | None = None  # each generated token's logprob (Ollama 0.12.11+)
    top_logprobs: int | None = None  # with logprobs: this many most likely tokens per position (0-20)


class GenerateRequest(_Generation):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class ChatRequest(_Generation):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class EmbedRequest(_ModelRef):
    input: str | list[str] = ""
    truncate: bool = True
    options: ModelOptions | None = None
    keep_alive: str | int | float | None = None
    dimensions: int | None = Field(None, ge=1)
    user: EndUser = None  # an application's end user, as in /api/generate


class EmbeddingsRequest(_ModelRef):
    prompt: str = ""
    options: ModelOptions | None = None
    keep_alive: str | int | float | None = None


class ShowRequest(_ModelRef):
    verbose: bool = False


class PullRequest(_ModelRef):
    insecure: bool = False
    stream: bool = True


class CreateRequest(_ModelRef):
    from_: str | None = Field(None, alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    license: str | list[str] | None = None
    messages: list[Message] | None = None
    quantize: str | None = None
    stream: bool = True


class CopyRequest(_Base):
    source: str
    destination: str


class DeleteRequest(_ModelRef):
    pass
