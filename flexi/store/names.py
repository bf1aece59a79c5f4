"""Model names like Ollama's: `[host/][namespace/]model[:tag]`.

A name becomes directories on disk (`manifests/<host>/<namespace>/<model>/<tag>`),
so parsing is strict: every part is checked against a small alphabet before any
path is built from it. Anything that could escape the store (`..`, `/etc`,
backslashes, NUL, percent-escapes) is rejected here, and the store checks the
resolved paths again.

Case: names compare case-insensitively (like Ollama) and are stored lower-cased
(`ModelName.filepath`), so `SmolLM2` and `smollm2` are one model even on a
case-sensitive file system. A name read back from disk is therefore lower-case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flexi.engine.types import BadRequest

DEFAULT_HOST = "local"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
HF_HOSTS = frozenset({"hf.co", "huggingface.co"})

MAX_TOTAL = 350
_LIMITS = {"host": 253, "namespace": 80, "model": 100, "tag": 80}  # HF repo names go up to 96
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class InvalidModelName(BadRequest):
    """The text is not a model name we accept (answered as HTTP 400)."""

    def __init__(self, text: str, reason: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"invalid model name {shown!r}: {reason}", param="model")
        self.reason = reason


@dataclass(frozen=True, eq=False)
class ModelName:
    """A fully qualified model name; equality and hashing ignore case."""

    host: str = DEFAULT_HOST
    namespace: str = DEFAULT_NAMESPACE
    model: str = ""
    tag: str = DEFAULT_TAG

    @property
    def parts(self) -> tuple[str, str, str, str]:
        return (self.host, self.namespace, self.model, self.tag)

    @property
    def filepath(self) -> tuple[str, str, str, str]:
        """Lower-cased path components of the manifest under `manifests/`."""
        return tuple(p.lower() for p in self.parts)  # type: ignore[return-value]

    @property
    def display(self) -> str:
        """Short form as Ollama shows it: default host/namespace dropped, tag kept."""
        host_default = self.host.lower() == DEFAULT_HOST
        if host_default and self.namespace.lower() == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if host_default:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def is_huggingface(self) -> bool:
        return self.host.lower() in HF_HOSTS

    def canonical(self) -> ModelName:
        """The lower-cased form, the way the store keeps it."""
        return ModelName(*self.filepath)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelName) and self.filepath == other.filepath

    def __hash__(self) -> int:
        return hash(self.filepath)

    def __str__(self) -> str:
        return self.display


def _check_part(text: str, kind: str, value: str) -> None:
    if not value:
        raise InvalidModelName(text, f"empty {kind}")
    if len(value) > _LIMITS[kind]:
        raise InvalidModelName(text, f"{kind} longer than {_LIMITS[kind]} characters")
    if ".." in value:
        raise InvalidModelName(text, f'{kind} must not contain ".."')
    if not _PART.fullmatch(value):
        raise InvalidModelName(
            text,
            f"{kind} {value!r} may only contain letters, digits, '_', '.' and '-', "
            "and must start with a letter, digit or '_'",
        )


def parse_model_name(text: str) -> ModelName:
    """Parse `model`, `model:tag`, `ns/model:tag`, `host/ns/model:tag` (e.g. `hf.co/org/repo:Q4_K_M`)."""
    if not isinstance(text, str) or not text:
        raise InvalidModelName(str(text), "empty name")
    if len(text) > MAX_TOTAL:
        raise InvalidModelName(text, f"longer than {MAX_TOTAL} characters")
    for bad, what in (("\\", "backslashes"), ("\x00", "NUL bytes"), ("%", "'%'")):
        if bad in text:
            raise InvalidModelName(text, f"{what} are not allowed")
    if text.startswith("/"):
        raise InvalidModelName(text, "absolute paths are not allowed")
    path, _, tag = text.rpartition(":") if ":" in text.rsplit("/", 1)[-1] else (text, "", DEFAULT_TAG)
    if ":" in path:
        raise InvalidModelName(text, "':' is only allowed before the tag")
    pieces = path.split("/")
    if len(pieces) > 3:
        raise InvalidModelName(text, "too many '/' (expected [host/][namespace/]model[:tag])")
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(pieces) == 3:
        host, namespace, model = pieces
    elif len(pieces) == 2:
        namespace, model = pieces
    else:
        (model,) = pieces
    _check_part(text, "host", host)
    _check_part(text, "namespace", namespace)
    _check_part(text, "model", model)
    _check_part(text, "tag", tag)
    return ModelName(host, namespace, model, tag)
