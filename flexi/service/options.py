"""Ollama's `options` object, validated, and its mapping onto internal sampling parameters.

The OpenAI router builds the same `ModelOptions` from its top-level fields, so both
dialects share defaults, validation and clamping.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flexi.engine.types import BadRequest, SamplingParams


MAX_STOPS = 32
MAX_STOP_CHARS = 512
# Issue 11: every number a request brings is finite and within what the sampler can use sensibly.
MAX_TOP_K = 1000  # 0 = off (whole vocabulary); more than a thousand candidates only costs sort time per token
MAX_REPEAT_PENALTY = 5.0  # logits are divided by it: beyond ~2 the output is already degenerate (assistants: same)
MAX_TOKENS_FIELD = 2**31 - 1  # num_ctx / num_predict / max_tokens beyond this are not numbers a client means
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # 64-bit seeds are common; the runner uses the low 32 bits


class ModelOptions(BaseModel):
    """Runtime options (Ollama names). Unknown options are ignored, like Ollama."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    temperature: float | None = Field(None, ge=0, le=100)
    top_k: int | None = Field(None, ge=0, le=MAX_TOP_K)
    top_p: float | None = Field(None, ge=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    typical_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    stop: list[str] | None = None
    num_predict: int | None = Field(None, ge=-2, le=MAX_TOKENS_FIELD)  # then clamped to the caller's cap
    num_ctx: int | None = Field(None, ge=1, le=MAX_TOKENS_FIELD)  # then clamped to the caller's cap and the model's
    repeat_penalty: float | None = Field(None, ge=0, le=MAX_REPEAT_PENALTY)
    repeat_last_n: int | None = Field(None, ge=-1, le=1_048_576)  # -1 = whole context; clamped to it in the runner
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    ignore_eos: bool | None = None
    # accepted for Ollama compatibility and ignored (the server decides these), but still bounded
    num_keep: int | None = Field(None, ge=-1, le=1_048_576)
    num_batch: int | None = Field(None, ge=1, le=1_048_576)
    num_thread: int | None = Field(None, ge=0, le=1024)
    num_gpu: int | None = Field(None, ge=-1, le=1024)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _stop_bounds(cls, value: list[str] | None) -> list[str] | None:
        """Every stop string is matched against every token of the stream: keep the work bounded."""
        if value is not None and (len(value) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in value)):
            raise ValueError(f"at most {MAX_STOPS} stop strings of at most {MAX_STOP_CHARS} characters each")
        return value


_SAMPLING = SamplingParams()  # the one place sampling defaults are written (flexi/engine/types.py)
DEFAULTS = ModelOptions(**{k: v for k, v in vars(_SAMPLING).items() if v is not None})


def merged(model_defaults: dict[str, Any], request: ModelOptions | None) -> ModelOptions:
    """Request options over the model's Modelfile parameters over Flexi's defaults."""
    base = DEFAULTS.model_dump(exclude_none=True)
    base.update(model_parameters(model_defaults).model_dump(exclude_none=True))
    if request is not None:
        base.update(request.model_dump(exclude_none=True))
    return ModelOptions.model_validate(base)


def model_parameters(parameters: dict[str, Any] | None) -> ModelOptions:
    """A model's stored default parameters (Modelfile PARAMETER / create `parameters`), validated."""
    try:
        return ModelOptions.model_validate(parameters or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise BadRequest(f'invalid model parameter "{field}": {first.get("msg", "invalid value")}', param="parameters") from None


def sampling_of(options: ModelOptions) -> SamplingParams:
    """The sampler settings of `options`; what they leave unset keeps SamplingParams' default."""
    given = {k: getattr(options, k) for k in vars(_SAMPLING)}
    return SamplingParams(**{k: v if v is not None else getattr(_SAMPLING, k) for k, v in given.items()})


def max_tokens_of(options: ModelOptions) -> int:
    """num_predict: -1 (or unset) = until the context is full; -2 = fill the context; clamped by the server."""
    n = options.num_predict
    return -1 if n is None or n < 0 else n
