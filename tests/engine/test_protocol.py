"""The runner protocol's codec and conversions, pure: no runner, no model."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from flexi.engine.runner import protocol as p
from flexi.engine.types import EmbeddingRequest, GenerationRequest, SamplingParams

SAMPLING = p.Sampling(**vars(SamplingParams()))
REQUESTS: list[p.Request] = [
    p.Generate(prompt="Zeile 1\nZeile 2 – äöü 🙂", sampling=SAMPLING),
    p.Generate(prompt="", sampling=p.Sampling(**vars(SamplingParams(temperature=0, seed=2**64 - 1))),
               prefix_tokens=[1, 2], max_tokens=7, stop=["\n\n"], grammar='root ::= "a"', ignore_eos=True,
               return_tokens=True, add_bos=False),
    p.Cancel(),
    p.Embed(inputs=["a", "b"], truncate=False, normalize=False),
    p.Tokenize(text="hi", add_special=True),
    p.Detokenize(tokens=[3, 4]),
]
EVENTS: list[p.Event] = [
    p.Prefill(prompt_tokens=12, cached_tokens=4),
    p.Text("a\nb", 3),
    p.Text("", 4),  # empty while a stop string is being matched
    p.Done(finish_reason="length", prompt_tokens=1, completion_tokens=2, prompt_eval_ns=3, eval_ns=4, cached_tokens=5,
           tokens=[1, 2, 3]),
    p.Error("the prompt is too long", 400),
    p.Embedded(embeddings=[[0.5, -0.25]], prompt_tokens=2),
    p.Tokenized(tokens=[1]),
    p.Detokenized(text="hi"),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_requests_round_trip(message: p.Request) -> None:
    frame = p.encode(41, message)
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1  # a newline in a prompt never splits a frame
    assert p.decode_request(frame) == (41, message)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_events_round_trip(event: p.Event) -> None:
    frame = p.encode(7, event)
    assert frame.count(b"\n") == 1
    assert p.decode_event(frame) == (7, event)


def test_the_text_event_frame_is_short() -> None:
    assert p.encode(17, p.Text(" world", 5)) == b'[17,{"ev":"text","text":" world","n":5}]\n'


@pytest.mark.parametrize(("frame", "says"), [
    (b'[1,{"ev":"text","n":1}]', "missing required field `text` - at `$[1]`"),
    (b'[1,{"ev":"texts","text":"a","n":1}]', "Invalid value 'texts' - at `$[1].ev`"),
    (b'[1,{"text":"a","n":1}]', "missing required field `ev`"),
    (b'[1,{"ev":"text","text":"a","n":"1"}]', "Expected `int`, got `str` - at `$[1].n`"),
    (b'[1,{"ev":"text","text":"a","n":1,"extra":true}]', "unknown field `extra`"),
    (b'[1,{"ev":"done","finish_reason":"tired","prompt_tokens":1,"completion_tokens":1,"prompt_eval_ns":1,'
     b'"eval_ns":1}]', "Invalid enum value 'tired' - at `$[1].finish_reason`"),
    (b'{"id":1,"ev":"text","text":"a","n":1}', "Expected `array`, got `object`"),  # the old dict format
    (b'[1,{"ev":"text"', "truncated"),
])
def test_malformed_events_are_refused_with_what_is_wrong(frame: bytes, says: str) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode_event(frame)
    assert str(caught.value).startswith("malformed event: ") and says in str(caught.value)


def test_malformed_requests_are_refused_and_their_id_can_still_be_read() -> None:
    frame = b'[9,{"op":"generate","prompt":"hi"}]'
    with pytest.raises(p.ProtocolError, match=r"missing required field `sampling`"):
        p.decode_request(frame)
    assert p.frame_id(frame) == 9
    assert p.frame_id(b"not json") is None and p.frame_id(b'{"id":9}') is None
    with pytest.raises(p.ProtocolError, match=r"Invalid value 'text' - at `\$\[1\]\.op`"):
        p.decode_request(b'[9,{"op":"text"}]')  # an event tag is no request
    with pytest.raises(p.ProtocolError, match="Expected `int`, got `str`"):
        p.decode_request(b'["9",{"op":"cancel"}]')


def test_ready_line_round_trip_and_other_output_is_ignored() -> None:
    info = p.RunnerInfo(pid=1, n_ctx=512, n_parallel=2, n_ctx_train=8192, n_embd=576, n_vocab=49152)
    line = p.ready_line(info)
    assert line.startswith(p.READY_PREFIX) and "\n" not in line
    assert p.parse_ready(line) == info
    assert p.parse_ready("llama.cpp: loading model") is None
    with pytest.raises(p.ProtocolError, match="missing required field `n_ctx`"):
        p.parse_ready(p.READY_PREFIX + '{"pid": 1}')


def test_generate_message_carries_every_field_a_runner_needs() -> None:
    sampling = SamplingParams(temperature=0.1, top_k=3, top_p=0.5, min_p=0.05, typical_p=0.9, repeat_penalty=1.2,
                              repeat_last_n=-1, presence_penalty=0.3, frequency_penalty=0.4, seed=42)
    req = GenerationRequest(model="m", prompt="hi", prefix_tokens=[5], max_tokens=100, stop=["x"], sampling=sampling,
                            grammar="root ::= [a]", ignore_eos=True, return_tokens=True, add_bos=False)
    message = p.generate_message(req)  # resolved: its limits are used as they are
    assert message == p.Generate(prompt="hi", sampling=p.Sampling(**vars(sampling)), prefix_tokens=[5], max_tokens=100,
                                 stop=["x"], grammar="root ::= [a]", ignore_eos=True, return_tokens=True, add_bos=False)
    # one set of sampling fields: adding one to SamplingParams without the wire fails here, not in production
    assert [f.name for f in dataclasses.fields(SamplingParams)] == list(p.Sampling.__struct_fields__)


def test_embed_message_and_generation_stats() -> None:
    assert p.embed_message(EmbeddingRequest(model="m", inputs=["a"], truncate=False)) == p.Embed(
        inputs=["a"], truncate=False, normalize=True)
    done = p.Done(finish_reason="stop", prompt_tokens=1, completion_tokens=2, prompt_eval_ns=3, eval_ns=4,
                  cached_tokens=5, tokens=[6])
    stats = p.generation_stats(done, load_ns=7, queue_ns=8)
    assert (stats.finish_reason, stats.prompt_tokens, stats.completion_tokens, stats.prompt_eval_ns, stats.eval_ns,
            stats.cached_tokens, stats.tokens, stats.load_ns, stats.queue_ns) == ("stop", 1, 2, 3, 4, 5, [6], 7, 8)


def test_messages_are_immutable_values() -> None:
    with pytest.raises(AttributeError):
        p.Text("a", 1).text = "b"  # type: ignore[misc]
    assert isinstance(p.Text("a", 1), msgspec.Struct) and p.Text("a", 1) == p.Text("a", 1)
