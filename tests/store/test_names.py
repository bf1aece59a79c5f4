"""Model name parsing: Ollama's forms accepted, anything path-like rejected."""

import pytest

from flexi.engine.types import BadRequest
from flexi.store.names import InvalidModelName, ModelName, parse_model_name


@pytest.mark.parametrize(
    ("text", "parts", "display"),
    [
        ("smollm2", ("local", "library", "smollm2", "latest"), "smollm2:latest"),
        ("smollm2:135m", ("local", "library", "smollm2", "135m"), "smollm2:135m"),
        ("alice/mymodel:v1.2", ("local", "alice", "mymodel", "v1.2"), "alice/mymodel:v1.2"),
        ("example.com/ns/model:tag", ("example.com", "ns", "model", "tag"), "example.com/ns/model:tag"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
         ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"),
         "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        ("local/library/smollm2:135m", ("local", "library", "smollm2", "135m"), "smollm2:135m"),
        ("_under_score:x", ("local", "library", "_under_score", "x"), "_under_score:x"),
    ],
)
def test_good_names(text: str, parts: tuple[str, ...], display: str) -> None:
    name = parse_model_name(text)
    assert name.parts == parts
    assert name.display == display
    assert str(name) == display


@pytest.mark.parametrize(
    "text",
    [
        "", "../x", "..", "x/../y", "/etc/passwd", "a\\b", "a\x00b", "%2e%2e", "%2e%2e/x", "model:",
        ":tag", "a//b", "a/b/c/d", "a/b/c/d:e", ".hidden", "-dash", "model:-tag", "model:.tag",
        "ns/.x:1", "host:80/ns/m", "a:b:c", "model name", "mod\nel", "caf\u00e9", "m@sha256:00",
        "x" * 101, "m:" + "t" * 81,
        "h" * 200 + "/" + "n" * 80 + "/" + "m" * 60 + ":" + "t" * 8,  # each part fine, total 351
        "a..b", "hf.co/org/repo:Q4..K",
    ],
)
def test_bad_names(text: str) -> None:
    with pytest.raises(InvalidModelName) as info:
        parse_model_name(text)
    assert isinstance(info.value, BadRequest)
    assert info.value.status == 400
    assert "invalid model name" in info.value.message


def test_limits_are_inclusive() -> None:
    assert len(parse_model_name("h" * 200 + "/" + "n" * 80 + "/" + "m" * 60 + ":" + "t" * 7).host) == 200  # total 350
    assert parse_model_name("m:" + "t" * 80).tag == "t" * 80
    assert parse_model_name("m" * 100).model == "m" * 100


def test_case_insensitive_equality_and_lowercase_storage() -> None:
    a = parse_model_name("SmolLM2:135M")
    b = parse_model_name("smollm2:135m")
    assert a == b and hash(a) == hash(b)
    assert a.model == "SmolLM2"  # case kept as given ...
    assert a.filepath == ("local", "library", "smollm2", "135m")  # ... but stored lower-cased
    assert a.canonical().display == "smollm2:135m"
    assert parse_model_name("HF.CO/Org/Repo:Q4").is_huggingface
    assert parse_model_name("huggingface.co/org/repo").is_huggingface
    assert not parse_model_name("org/repo").is_huggingface


def test_model_name_is_frozen() -> None:
    name = ModelName(model="x")
    with pytest.raises(AttributeError):
        name.model = "y"  # type: ignore[misc]
    assert name.display == "x:latest"
