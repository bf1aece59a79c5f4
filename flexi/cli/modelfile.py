"""A minimal Modelfile parser (Ollama's syntax) for `flexi create`.

Supported: FROM, TEMPLATE, SYSTEM, PARAMETER <name> <value>, LICENSE, ADAPTER,
MESSAGE <role> <content>; values may be bare text, "quoted" or \"\"\"multi-line\"\"\".
Instructions are case-insensitive; lines starting with # are comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flexi.i18n import t

INSTRUCTIONS = {"FROM", "TEMPLATE", "SYSTEM", "PARAMETER", "LICENSE", "ADAPTER", "MESSAGE", "REQUIRES"}

_INT_PARAMS = {"num_ctx", "num_predict", "top_k", "seed", "repeat_last_n", "num_keep", "num_batch",
               "num_gpu", "num_thread", "mirostat", "main_gpu"}
_FLOAT_PARAMS = {"temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty", "mirostat_tau", "mirostat_eta", "tfs_z"}
_BOOL_PARAMS = {"ignore_eos", "penalize_newline", "use_mmap", "use_mlock", "numa", "low_vram"}
_LIST_PARAMS = {"stop"}
_WORD = re.compile(r"(\S+)\s*(.*)", re.S)


class ModelfileError(ValueError):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(t("modelfile_error", line=line, problem=problem))
        self.line = line


@dataclass
class Modelfile:
    from_: str | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    licenses: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)

    def request_fields(self) -> dict[str, Any]:
        """The /api/create fields other than model, from, files and adapters."""
        body: dict[str, Any] = {}
        if self.template is not None:
            body["template"] = self.template
        if self.system is not None:
            body["system"] = self.system
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        if self.licenses:
            body["license"] = self.licenses[0] if len(self.licenses) == 1 else list(self.licenses)
        if self.messages:
            body["messages"] = list(self.messages)
        return body


def convert_parameter(name: str, value: str) -> Any:
    """A PARAMETER value typed like Ollama's options (int, float, bool, list for stop)."""
    key = name.lower()
    if key in _LIST_PARAMS:
        return [value]
    try:
        if key in _INT_PARAMS:
            return int(value)
        if key in _FLOAT_PARAMS:
            return float(value)
    except ValueError:
        raise ValueError(f'invalid value "{value}" for parameter {name}') from None
    if key in _BOOL_PARAMS or value.lower() in {"true", "false"}:
        if value.lower() not in {"true", "false"}:
            raise ValueError(f'invalid value "{value}" for parameter {name}')
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def parse_modelfile(text: str) -> Modelfile:
    """Parse Modelfile text; raise ModelfileError naming the line on mistakes."""
    mf = Modelfile()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno, stripped = i + 1, lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        word, rest = _WORD.match(stripped).groups()  # type: ignore[union-attr]
        instruction = word.upper()
        if instruction not in INSTRUCTIONS:
            raise ModelfileError(lineno, t("modelfile_unknown", word=word))
        name = ""
        if instruction in {"PARAMETER", "MESSAGE"}:
            match = _WORD.match(rest)
            if not match:
                raise ModelfileError(lineno, t("modelfile_missing_value", word=word))
            name, rest = match.groups()
        if rest.startswith('"""'):
            body = rest[3:]
            while '"""' not in body:
                if i >= len(lines):
                    raise ModelfileError(lineno, t("modelfile_unterminated"))
                body += "\n" + lines[i]
                i += 1
            value, _, after = body.partition('"""')
            if after.strip():
                raise ModelfileError(lineno, t("modelfile_trailing"))
        else:
            value = _unquote(rest.strip())
        if not value and instruction not in {"TEMPLATE", "SYSTEM"}:
            raise ModelfileError(lineno, t("modelfile_missing_value", word=word))
        _apply(mf, instruction, name, value, lineno)
    return mf


def _apply(mf: Modelfile, instruction: str, name: str, value: str, lineno: int) -> None:
    if instruction == "FROM":
        mf.from_ = value
    elif instruction == "TEMPLATE":
        mf.template = value
    elif instruction == "SYSTEM":
        mf.system = value
    elif instruction == "LICENSE":
        mf.licenses.append(value)
    elif instruction == "ADAPTER":
        mf.adapters.append(value)
    elif instruction == "MESSAGE":
        if not name or not value:
            raise ModelfileError(lineno, t("modelfile_bad_message"))
        mf.messages.append({"role": name.lower(), "content": value})
    elif instruction == "PARAMETER":
        try:
            converted = convert_parameter(name, value)
        except ValueError as exc:
            raise ModelfileError(lineno, str(exc)) from None
        key = name.lower()
        if isinstance(converted, list) and isinstance(mf.parameters.get(key), list):
            mf.parameters[key].extend(converted)
        else:
            mf.parameters[key] = converted
    # REQUIRES (minimum server version) is accepted and ignored.
