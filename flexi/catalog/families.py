"""Typed loading and validation of `families.toml`.

The file is checked completely when it is loaded (every openness dimension present with a value from
`LEVELS`, every family with sources, unique ids), so a wrong edit fails the test suite and the first
`flexi catalog`, never a page at run time.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

# The index's availability, documentation and access dimensions, in its order (code documentation,
# the index's 14th, is folded into `code`).
DIMENSIONS: tuple[str, ...] = ("code", "training_data", "weights", "rlhf_data", "rlhf_weights", "licence", "paper",
                               "architecture", "preprint", "model_card", "datasheet", "package", "api")
LEVELS: tuple[str, ...] = ("open", "partial", "closed", "unknown")
BASES: tuple[str, ...] = ("index", "flexi")


class CatalogError(ValueError):
    """The catalogue data is malformed (a bug in the shipped file or an edit of it)."""


@dataclass(frozen=True)
class Family:
    """One model family: what a teacher or admin needs to choose it, each claim backed by `sources`."""

    id: str
    name: str
    organization: str
    sizes: tuple[str, ...]
    context_length: int | None
    licence: str
    licence_id: str
    licence_url: str
    languages: tuple[str, ...]
    german_note: dict[str, str]
    openness: dict[str, str]
    openness_basis: str
    sources: tuple[str, ...]
    openness_entry: str | None = None
    match_names: tuple[str, ...] = ()
    match_architectures: tuple[str, ...] = ()

    @property
    def open_count(self) -> int:
        return sum(1 for d in DIMENSIONS if self.openness[d] == "open")

    @property
    def unknown_count(self) -> int:
        return sum(1 for d in DIMENSIONS if self.openness[d] == "unknown")

    def score(self) -> str:
        """Like "9/13" (dimensions rated open of all dimensions)."""
        return f"{self.open_count}/{len(DIMENSIONS)}"

    def note(self, locale: str) -> str:
        return self.german_note.get(locale) or self.german_note["en"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "organization": self.organization, "sizes": list(self.sizes),
            "context_length": self.context_length, "licence": self.licence, "licence_id": self.licence_id, "licence_url": self.licence_url,
            "languages": list(self.languages), "german_note": dict(self.german_note),
            "openness": {d: self.openness[d] for d in DIMENSIONS}, "openness_score": self.score(),
            "open_count": self.open_count, "unknown_count": self.unknown_count, "openness_basis": self.openness_basis,
            "openness_entry": self.openness_entry, "sources": list(self.sources),
        }


@dataclass(frozen=True)
class Catalog:
    framework: dict[str, str]
    families: tuple[Family, ...] = field(default_factory=tuple)

    def get(self, key: str) -> Family | None:
        """A family by id or name, case-insensitive."""
        wanted = key.strip().lower()
        return next((f for f in self.families if wanted in (f.id.lower(), f.name.lower())), None)


def _str(raw: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: {key} must be a non-empty string")
    return value


def _strings(raw: dict[str, Any], key: str, where: str, required: bool = True) -> tuple[str, ...]:
    value = raw.get(key, [] if not required else None)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CatalogError(f"{where}: {key} must be a list of non-empty strings")
    if required and not value:
        raise CatalogError(f"{where}: {key} must not be empty")
    return tuple(value)


def _family(raw: Any, index: int) -> Family:
    if not isinstance(raw, dict):
        raise CatalogError(f"family #{index + 1} is not a table")
    where = f"family {raw.get('id', '#' + str(index + 1))}"
    openness = raw.get("openness")
    if not isinstance(openness, dict):
        raise CatalogError(f"{where}: openness table missing")
    unknown_dims = set(openness) - set(DIMENSIONS)
    missing = [d for d in DIMENSIONS if d not in openness]
    if unknown_dims or missing:
        raise CatalogError(f"{where}: openness dimensions unknown {sorted(unknown_dims)}, missing {missing}")
    bad = {d: v for d, v in openness.items() if v not in LEVELS}
    if bad:
        raise CatalogError(f"{where}: openness values must be one of {', '.join(LEVELS)}: {bad}")
    note = raw.get("german_note")
    if not isinstance(note, dict) or not all(isinstance(note.get(k), str) and note[k].strip() for k in ("en", "de")):
        raise CatalogError(f"{where}: german_note needs en and de texts")
    context = raw.get("context_length")
    if context is not None and (not isinstance(context, int) or isinstance(context, bool) or context <= 0):
        raise CatalogError(f"{where}: context_length must be a positive integer")
    basis = _str(raw, "openness_basis", where)
    if basis not in BASES:
        raise CatalogError(f"{where}: openness_basis must be one of {', '.join(BASES)}")
    sources = _strings(raw, "sources", where)
    if not all(s.startswith("https://") for s in sources):
        raise CatalogError(f"{where}: every source must be an https:// URL")
    match = raw.get("match", {})
    if not isinstance(match, dict):
        raise CatalogError(f"{where}: match must be a table")
    entry = _str(raw, "openness_entry", where, required=False)
    if basis == "index" and not entry:
        raise CatalogError(f"{where}: ratings taken from the index need openness_entry")
    return Family(
        id=_str(raw, "id", where) or "", name=_str(raw, "name", where) or "",
        organization=_str(raw, "organization", where) or "", sizes=_strings(raw, "sizes", where),
        context_length=context, licence=_str(raw, "licence", where) or "", licence_id=_str(raw, "licence_id", where) or "",
        licence_url=_str(raw, "licence_url", where) or "", languages=_strings(raw, "languages", where),
        german_note={"en": note["en"], "de": note["de"]}, openness=dict(openness), openness_basis=basis,
        sources=sources, openness_entry=entry,
        match_names=tuple(normal_name(n) for n in _strings(match, "names", where + " match", required=False)),
        match_architectures=tuple(a.lower() for a in _strings(match, "architectures", where + " match", required=False)),
    )


def normal_name(text: str) -> str:
    """Lower case, letters and digits only: "Llama-3.1 8B" and "llama3.1:8b" compare alike."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def parse_catalog(data: dict[str, Any]) -> Catalog:
    """Validate a parsed TOML document; raises CatalogError on the first problem."""
    framework = data.get("framework")
    if not isinstance(framework, dict) or not all(isinstance(framework.get(k), str) for k in ("name", "url", "citation")):
        raise CatalogError("framework needs name, url and citation (attribution of the openness ratings)")
    raw_families = data.get("family")
    if not isinstance(raw_families, list) or not raw_families:
        raise CatalogError("no [[family]] entries")
    families = tuple(_family(raw, i) for i, raw in enumerate(raw_families))
    ids = [f.id for f in families]
    if len(set(ids)) != len(ids):
        raise CatalogError(f"duplicate family ids in {ids}")
    return Catalog(framework={k: str(v) for k, v in framework.items()}, families=families)


@functools.cache
def load_catalog() -> Catalog:
    """The shipped catalogue (read once per process)."""
    text = resources.files("flexi.catalog").joinpath("families.toml").read_text(encoding="utf-8")
    return parse_catalog(tomllib.loads(text))
