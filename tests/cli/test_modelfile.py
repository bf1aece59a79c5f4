"""Parsing Modelfiles for `flexi create`."""

from __future__ import annotations

import pytest

from flexi.cli.modelfile import Modelfile, ModelfileError, convert_parameter, parse_modelfile


def test_parse_all_instructions():
    mf = parse_modelfile(
        "# comment\n"
        "FROM ./model.gguf\n"
        "\n"
        'TEMPLATE """{{ if .System }}<|system|>{{ .System }}{{ end }}\n'
        '<|user|>{{ .Prompt }}"""\n'
        'SYSTEM "You are Mario."\n'
        "PARAMETER temperature 0.7\n"
        "PARAMETER num_ctx 4096\n"
        'PARAMETER stop "<|end|>"\n'
        "PARAMETER stop <|user|>\n"
        "PARAMETER penalize_newline false\n"
        'LICENSE """MIT License\nCopyright"""\n'
        "ADAPTER ./lora.gguf\n"
        'MESSAGE user "Is Toronto in Canada?"\n'
        "MESSAGE assistant yes\n"
    )
    assert mf.from_ == "./model.gguf"
    assert mf.template == "{{ if .System }}<|system|>{{ .System }}{{ end }}\n<|user|>{{ .Prompt }}"
    assert mf.system == "You are Mario."
    assert mf.parameters == {"temperature": 0.7, "num_ctx": 4096, "stop": ["<|end|>", "<|user|>"],
                             "penalize_newline": False}
    assert mf.licenses == ["MIT License\nCopyright"]
    assert mf.adapters == ["./lora.gguf"]
    assert mf.messages == [{"role": "user", "content": "Is Toronto in Canada?"},
                           {"role": "assistant", "content": "yes"}]


def test_instructions_are_case_insensitive_and_bare_values_keep_spaces():
    mf = parse_modelfile("from llama3.2\nsystem  You are   a tutor. \n")
    assert mf.from_ == "llama3.2" and mf.system == "You are   a tutor."


def test_request_fields():
    mf = Modelfile(from_="x", system="s", parameters={"top_k": 5}, licenses=["A", "B"])
    assert mf.request_fields() == {"system": "s", "parameters": {"top_k": 5}, "license": ["A", "B"]}
    assert Modelfile(licenses=["MIT"]).request_fields() == {"license": "MIT"}


def test_multiline_block_starting_on_next_line():
    mf = parse_modelfile('SYSTEM """\nLine one\nLine two\n"""\n')
    assert mf.system == "\nLine one\nLine two\n"


@pytest.mark.parametrize("text,line,fragment", [
    ("FROM x\nFOO bar\n", 2, 'unknown instruction "FOO"'),
    ("FROM\n", 1, "missing value for FROM"),
    ('FROM x\nTEMPLATE """never closed\n', 2, 'unterminated """'),
    ('SYSTEM """a""" b\n', 1, 'after closing """'),
    ("PARAMETER num_ctx lots\n", 1, 'invalid value "lots" for parameter num_ctx'),
    ("PARAMETER temperature\n", 1, "missing value"),
    ("MESSAGE user\n", 1, "missing value"),
])
def test_errors_name_the_line(text, line, fragment):
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text)
    assert info.value.line == line
    assert f"line {line}" in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("name,value,expected", [
    ("stop", "###", ["###"]), ("seed", "42", 42), ("top_p", "0.9", 0.9), ("use_mmap", "true", True),
    ("custom", "3", 3), ("custom", "1.5", 1.5), ("custom", "text", "text"), ("TEMPERATURE", "1", 1.0),
])
def test_convert_parameter(name, value, expected):
    converted = convert_parameter(name, value)
    assert converted == expected and type(converted) is type(expected)
