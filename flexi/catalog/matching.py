"""Which catalogue family an installed model belongs to, from its GGUF metadata.

The architecture alone says little (SmolLM2, Mistral 7B and the Llama-based DeepSeek distills all
report `llama`), so names decide first: general.basename, general.name and the installed name, compared
without case and separators. Families are tried in file order, the more specific first. Only when no
name matches does an architecture listed by exactly one family count (`by = "architecture"`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from flexi.catalog.families import Catalog, Family, load_catalog, normal_name
from flexi.store.gguf_meta import GGUFInfo


@dataclass(frozen=True)
class FamilyMatch:
    family: Family
    by: Literal["name", "architecture"]


def _names(info: GGUFInfo, model_name: str | None) -> list[str]:
    meta = info.model_info
    candidates = [meta.get("general.basename"), meta.get("general.name"), info.name, model_name]
    return [normal_name(c) for c in candidates if isinstance(c, str) and c.strip()]


def match_family(info: GGUFInfo, model_name: str | None = None, catalog: Catalog | None = None) -> FamilyMatch | None:
    """The family of a model, or None when the catalogue does not know it."""
    catalog = catalog or load_catalog()
    names = _names(info, model_name)
    for family in catalog.families:
        if any(pattern in name for pattern in family.match_names for name in names):
            return FamilyMatch(family, "name")
    arch = (info.architecture or "").lower()
    owners = [f for f in catalog.families if arch in f.match_architectures]
    return FamilyMatch(owners[0], "architecture") if len(owners) == 1 else None


def installed_by_family(models: Iterable[tuple[str, GGUFInfo]],
                        catalog: Catalog | None = None) -> dict[str, list[str]]:
    """Installed model names per family id (models of unknown families are left out), names sorted."""
    found: dict[str, list[str]] = {}
    for name, info in models:
        match = match_family(info, name, catalog)
        if match is not None:
            found.setdefault(match.family.id, []).append(name)
    return {k: sorted(v) for k, v in found.items()}
