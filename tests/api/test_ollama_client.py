"""The official `ollama` Python client against a real `flexi serve` with the real model."""

from __future__ import annotations

import json

import ollama
import pytest

from tests.conftest import MODEL

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url, timeout=120)


def test_list_shows_default_model(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert MODEL in names
    entry = next(m for m in client.list().models if m.model == MODEL)
    assert entry.details.quantization_level == "Q4_1"
    assert entry.details.family == "llama"
    assert entry.size > 90_000_000


def test_generate_non_streaming(client: ollama.Client) -> None:
    r = client.generate(model=MODEL, prompt="What is the capital of France? Answer in one word.",
                        options={"temperature": 0, "num_predict": 8})
    assert r.done and r.done_reason in ("stop", "length")
    assert "Paris" in r.response
    assert r.eval_count and 0 < r.eval_count <= 8
    assert r.prompt_eval_count and r.prompt_eval_count > 5
    assert r.total_duration and r.total_duration >= (r.eval_duration or 0)
    assert r.context and all(isinstance(t, int) for t in r.context)


def test_generate_streaming_matches_non_streaming(client: ollama.Client) -> None:
    kwargs = dict(model=MODEL, prompt="Count from one to five.", options={"temperature": 0, "num_predict": 12, "seed": 1})
    whole = client.generate(**kwargs).response
    parts = list(client.generate(stream=True, **kwargs))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == whole


def test_num_predict_limits_output(client: ollama.Client) -> None:
    r = client.generate(model=MODEL, prompt="Write a long story about a dragon.",
                        options={"temperature": 0, "num_predict": 5})
    assert r.eval_count == 5 and r.done_reason == "length"


def test_stop_sequence(client: ollama.Client) -> None:
    r = client.generate(model=MODEL, prompt="List the numbers 1, 2, 3, 4, 5, 6 separated by commas.",
                        options={"temperature": 0, "num_predict": 40, "stop": ["4"]})
    assert "4" not in r.response and r.done_reason == "stop"


def test_chat_streaming_and_not(client: ollama.Client) -> None:
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"}]
    r = client.chat(model=MODEL, messages=messages, options={"temperature": 0, "num_predict": 16})
    assert r.message.role == "assistant" and "Paris" in r.message.content
    chunks = list(client.chat(model=MODEL, messages=messages, stream=True, options={"temperature": 0, "num_predict": 16}))
    assert "".join(c.message.content for c in chunks) == r.message.content
    assert chunks[-1].done and chunks[-1].eval_count == r.eval_count


def test_json_format_is_valid_json(client: ollama.Client) -> None:
    r = client.generate(model=MODEL, prompt="Describe a cat as JSON with keys name and age.", format="json",
                        options={"temperature": 0, "num_predict": 60})
    if r.done_reason == "stop":
        assert isinstance(json.loads(r.response), dict)
    else:  # cut by num_predict: must still be a valid JSON prefix starting an object
        assert r.response.lstrip().startswith("{")


def test_json_schema_format(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}, "country": {"type": "string", "maxLength": 20}},
              "required": ["city", "country"]}
    r = client.chat(model=MODEL, messages=[{"role": "user", "content": "Name a city and its country."}], format=schema,
                    options={"temperature": 0, "num_predict": 80})
    data = json.loads(r.message.content)
    assert set(data) == {"city", "country"} and all(isinstance(v, str) for v in data.values())


def test_embed_and_legacy_embeddings(client: ollama.Client) -> None:
    r = client.embed(model=MODEL, input=["Hallo Welt", "Guten Morgen"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    norm = sum(v * v for v in r.embeddings[0]) ** 0.5
    assert abs(norm - 1.0) < 1e-3
    assert r.embeddings[0] != r.embeddings[1]
    legacy = client.embeddings(model=MODEL, prompt="Hallo Welt")
    assert len(legacy.embedding) == 576
    assert abs(sum(v * v for v in legacy.embedding) ** 0.5 - 1.0) > 1e-3  # not normalised, like Ollama


def test_show(client: ollama.Client) -> None:
    r = client.show(MODEL)
    assert r.details.quantization_level == "Q4_1"
    assert "completion" in (r.capabilities or [])
    assert r.modelinfo and r.modelinfo.get("general.architecture") == "llama"
    assert r.template and "im_start" in r.template


def test_ps_after_use(client: ollama.Client) -> None:
    client.generate(model=MODEL, prompt="Hi", options={"num_predict": 1})
    running = client.ps().models
    entry = next(m for m in running if m.model == MODEL)
    assert entry.size and entry.size > entry.size_vram
    assert entry.expires_at is not None


def test_copy_and_delete(client: ollama.Client) -> None:
    client.copy(MODEL, "my-copy:v1")
    assert "my-copy:v1" in [m.model for m in client.list().models]
    r = client.generate(model="my-copy:v1", prompt="Hi", options={"num_predict": 2})
    assert r.done
    client.delete("my-copy:v1")
    assert "my-copy:v1" not in [m.model for m in client.list().models]
    assert MODEL in [m.model for m in client.list().models]  # shared blobs survive
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("my-copy:v1")
    assert err.value.status_code == 404


def test_unknown_model_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="nosuchmodel:7b", prompt="hi")
    assert err.value.status_code == 404
    assert err.value.error == 'model "nosuchmodel:7b" not found, try pulling it first'


def test_create_from_uploaded_blob(client: ollama.Client, server) -> None:  # type: ignore[no-untyped-def]
    from flexi.store.store import default_model_file

    path = default_model_file()
    assert path is not None
    digest = client.create_blob(path)
    r = client.create(model="tutor:latest", files={"model.gguf": digest}, system="Antworte immer auf Deutsch.",
                      parameters={"temperature": 0.2})
    assert r.status == "success"
    shown = client.show("tutor")
    assert 'SYSTEM """Antworte immer auf Deutsch."""' in (shown.modelfile or "")
    assert "temperature" in (shown.parameters or "")
    client.delete("tutor")
