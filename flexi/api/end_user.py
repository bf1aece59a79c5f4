"""The `user` field both dialects accept (OpenAI's `user`; Flexi's extension of Ollama's bodies): an
application's own id for its end user. It is hashed into a pseudonym and the fair-queue identity, so it
must be text that encodes (a lone surrogate such as "\\ud800" would fail there, as a 500) and short."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

MAX_END_USER = 256


def _well_formed(value: str | None) -> str | None:
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be well-formed text (no lone surrogates)") from None
    return value


EndUser = Annotated[str | None, Field(max_length=MAX_END_USER), AfterValidator(_well_formed)]
