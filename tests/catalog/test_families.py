"""The shipped catalogue is complete and valid, and the validator refuses what it must."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from typing import Any

import pytest

from flexi.catalog import DIMENSIONS, LEVELS, CatalogError, load_catalog, parse_catalog

REQUIRED = {"smollm2", "llama3", "mistral", "qwen", "gemma", "phi", "olmo2", "teuken", "llammlein", "eurollm",
            "apertus", "deepseek-r1-distill", "gpt-oss"}


def _raw() -> dict[str, Any]:
    return tomllib.loads(resources.files("flexi.catalog").joinpath("families.toml").read_text(encoding="utf-8"))


def test_the_shipped_catalogue_covers_the_families_and_every_family_is_complete() -> None:
    catalog = load_catalog()
    assert REQUIRED <= {f.id for f in catalog.families}
    for family in catalog.families:
        assert family.sources and all(s.startswith("https://") for s in family.sources), family.id
        assert set(family.openness) == set(DIMENSIONS) and set(family.openness.values()) <= set(LEVELS), family.id
        assert family.sizes and family.licence and family.licence_id and family.licence_url.startswith("https://")
        assert family.note("de") != family.note("en"), family.id  # both languages written, not copied
        assert family.match_names or family.match_architectures, family.id
        if family.openness_basis == "index":
            assert family.openness_entry and "opening-up-chatgpt" in family.openness_entry


def test_attribution_of_the_openness_framework_is_in_the_data() -> None:
    framework = load_catalog().framework
    assert "Liesenfeld" in framework["citation"] and framework["data_licence"] == "CC-BY-4.0"
    assert framework["origin"] == "https://opening-up-chatgpt.github.io"


def test_scores_count_open_dimensions() -> None:
    olmo = load_catalog().get("OLMo 2")
    assert olmo is not None and olmo.id == "olmo2"
    opened = sum(1 for d in DIMENSIONS if olmo.openness[d] == "open")
    assert olmo.score() == f"{opened}/13" and olmo.open_count == opened
    assert olmo.to_dict()["openness_score"] == olmo.score()


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["openness"].update(code="mostly"), "openness values"),
    (lambda f: f["openness"].pop("api"), "missing ['api']"),
    (lambda f: f["openness"].update(vibes="open"), "unknown ['vibes']"),
    (lambda f: f.update(sources=[]), "sources must not be empty"),
    (lambda f: f.pop("sources"), "sources must be a list"),
    (lambda f: f.update(sources=["http://example.org"]), "https://"),
    (lambda f: f.update(german_note={"en": "only English"}), "german_note"),
    (lambda f: f.update(context_length=-1), "context_length"),
    (lambda f: f.update(openness_basis="index", openness_entry=None), "openness_entry"),
])
def test_invalid_families_are_refused(edit, message: str) -> None:
    data = copy.deepcopy(_raw())
    family = next(f for f in data["family"] if f["id"] == "smollm2")
    family.pop("openness_entry", None)
    edit(family)
    with pytest.raises(CatalogError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_catalog(data)


def test_duplicate_ids_and_missing_attribution_are_refused() -> None:
    data = copy.deepcopy(_raw())
    data["family"].append(copy.deepcopy(data["family"][0]))
    with pytest.raises(CatalogError, match="duplicate"):
        parse_catalog(data)
    data = copy.deepcopy(_raw())
    del data["framework"]["citation"]
    with pytest.raises(CatalogError, match="attribution"):
        parse_catalog(data)
