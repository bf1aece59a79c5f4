"""Constrained output: turn a request's `format` into a GBNF grammar for llama.cpp.

Ollama's `format` is `"json"` (any JSON object) or a JSON schema; OpenAI's
`response_format` maps onto the same two cases in its router. The grammar is
built here, in the API layer, and validated completely before a request is
queued: a schema that llama.cpp cannot compile must be a 400 for the caller,
never a failure inside a runner that other users' sequences share.

Why a Python GBNF checker instead of asking llama.cpp? In llama-cpp-python
0.3.x `LlamaGrammar.from_string` no longer parses anything, and running the
native parser in the server process would put C code on untrusted input next
to every connection. `validate_gbnf` mirrors llama.cpp's `llama_grammar_parser`
(syntax, undefined rules, the `root` rule, repetition limits, left recursion);
the tests cross-check it against the native parser.

`llama_cpp` is imported lazily (only for JSON schemas): importing
`llama_cpp.llama_grammar` loads libllama, which a server that only proxies to
remote backends should not pay for at start-up.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from flexi.engine.types import BadRequest

__all__ = ["JSON_GBNF", "MAX_SCHEMA_BYTES", "grammar_for_format", "grammar_for_schema", "validate_gbnf"]

#: llama.cpp's `grammars/json.gbnf` (as shipped in `llama_cpp.llama_grammar.JSON_GBNF`): any JSON object.
JSON_GBNF = r"""
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
"""

MAX_SCHEMA_BYTES = 64 * 1024  # serialized schema
MAX_SCHEMA_DEPTH = 32  # nesting of subschemas
MAX_REPEAT_BOUND = 1000  # minItems/maxItems/minLength/maxLength and regex {m,n}: expanded textually
MAX_REPEAT_TOTAL = 10_000  # sum of all bounds in one schema
MAX_GRAMMAR_BYTES = 1024 * 1024
MAX_GBNF_REPETITION = 2000  # llama.cpp's MAX_REPETITION_THRESHOLD

_TYPES = ("string", "number", "integer", "boolean", "null", "object", "array")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_SINGLE = ("additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames")
_BOUNDS = ("minItems", "maxItems", "minLength", "maxLength")
_QUANTIFIER_RE = re.compile(r"(?<!\\)\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


def grammar_for_format(fmt: Any, *, param: str = "format") -> str | None:
    """GBNF for a request's output format: None (or "") → None, "json" → any object, a dict → that schema.

    Raises BadRequest(param=param) for anything else or for a schema that
    cannot be turned into a grammar. `param` lets the OpenAI router report
    `response_format` instead of `format`.
    """
    if fmt is None or fmt == "":
        return None
    if isinstance(fmt, str):
        if fmt.strip().lower() == "json":
            return JSON_GBNF
        raise BadRequest(f'invalid {param} {fmt!r}: use "json" or a JSON schema object', param=param)
    if isinstance(fmt, dict):
        return grammar_for_schema(fmt, param=param)
    raise BadRequest(f'invalid {param}: expected "json" or a JSON schema object, got {type(fmt).__name__}', param=param)


# Characters JSON allows unescaped inside a string: not the quote, not the backslash, no control
# characters. llama-cpp-python's converter lets `char` take control characters (a raw newline made
# `{"country": "El Salvador}\n\nThis a"}`, which no JSON parser accepts) and lets a pattern's `.`
# take quotes and backslashes; newer llama.cpp excludes them for `char` too.
_JSON_STRING_CHAR = r'[^"\\\x7F\x00-\x1F]'
_CHAR_RULE = re.compile(r'^char ::= \[\^"\\\\\] \|', re.M)
_DOT_RULE = re.compile(r"^dot ::= \[\^\\x0A\\x0D\]$", re.M)


def _json_safe_strings(grammar: str) -> str:
    """Restrict the converter's string characters to what JSON allows unescaped."""
    grammar = _CHAR_RULE.sub(lambda _m: f"char ::= {_JSON_STRING_CHAR} |", grammar)
    return _DOT_RULE.sub(lambda _m: f"dot ::= {_JSON_STRING_CHAR}", grammar)


def grammar_for_schema(schema: dict[str, Any], *, param: str = "format") -> str:
    """Validate a JSON schema and compile it to GBNF (cached by its serialization)."""
    if not isinstance(schema, dict):
        raise BadRequest(f"invalid {param}: a JSON schema must be an object", param=param)
    try:
        text = json.dumps(schema, ensure_ascii=False, allow_nan=False)  # key order matters: it is the output order
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"invalid {param}: schema is not valid JSON ({exc})", param=param) from None
    if len(text.encode()) > MAX_SCHEMA_BYTES:
        raise BadRequest(f"invalid {param}: schema larger than {MAX_SCHEMA_BYTES // 1024} KiB", param=param)
    return _compile_schema(text, param)


@lru_cache(maxsize=128)
def _compile_schema(text: str, param: str) -> str:
    schema = json.loads(text)
    problem = _SchemaChecker(schema).check()
    if problem:
        raise BadRequest(f"invalid {param}: {problem}", param=param)
    try:
        prepared = _hoist_root_ref(_prepare_patterns(schema))
    except _SchemaProblem as exc:
        raise BadRequest(f"invalid {param}: {exc}", param=param) from None
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # lazy: loads libllama

    try:
        grammar = json_schema_to_gbnf(json.dumps(prepared))
    except RecursionError:
        raise BadRequest(f"invalid {param}: schema nests too deeply", param=param) from None
    except Exception as exc:  # noqa: BLE001 - the converter signals bad input with asserts, KeyErrors, …
        raise BadRequest(f"invalid {param}: unsupported JSON schema ({_describe(exc)})", param=param) from None
    grammar = _json_safe_strings(grammar)
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise BadRequest(f"invalid {param}: schema too complex to enforce", param=param)
    try:
        validate_gbnf(grammar)
    except BadRequest as exc:
        raise BadRequest(f"invalid {param}: schema cannot be enforced ({exc.message})", param=param) from None
    return grammar


def _describe(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        msg = f"missing {msg}"
    return msg if len(msg) <= 300 else msg[:300] + "…"


def _hoist_root_ref(schema: dict[str, Any]) -> dict[str, Any]:
    """Work around the converter skipping `$defs` when the root itself is a `$ref`.

    llama-cpp-python's `resolve_refs` does not descend into a node that has a
    `$ref`, so `{"$defs": {...refs inside...}, "$ref": "#/$defs/x"}` (the shape
    Pydantic emits for recursive models) fails with a KeyError. Moving the root
    reference into a one-branch `anyOf` is equivalent and gets resolved.
    """
    if "$ref" not in schema:
        return schema
    out = {k: v for k, v in schema.items() if k not in ("$ref", "anyOf", "oneOf")}
    out["anyOf"] = [{"$ref": schema["$ref"]}]
    return out


_CLASS_SHORTHANDS = {"d": "0-9", "w": "a-zA-Z0-9_", "s": r" \t\n\r"}
_KEEP_ESCAPED = set('[]()|{}*+?\\"ntrxuU')  # the converter (or GBNF) understands these escapes


def _translate_regex(pattern: str) -> str:
    r"""Rewrite regex escapes llama-cpp-python's converter passes through verbatim into GBNF it rejects.

    `\d`, `\w`, `\s` (and negations outside brackets) become character classes,
    `\.` becomes `[.]`, escaped punctuation becomes the plain character; anchors,
    word boundaries and backreferences cannot be expressed and are refused.
    """
    out: list[str] = []
    i, n, in_class, class_start = 0, len(pattern), False, False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            i += 2
            low = e.lower()
            if low in _CLASS_SHORTHANDS:
                if in_class:
                    if e.isupper():
                        raise _SchemaProblem(f"regex \\{e} inside [...] is not supported in /{pattern}/")
                    out.append(_CLASS_SHORTHANDS[low])
                else:
                    out.append(("[^" if e.isupper() else "[") + _CLASS_SHORTHANDS[low] + "]")
            elif e.isalnum() and e not in "ntrxuU":
                raise _SchemaProblem(f"regex escape \\{e} is not supported in /{pattern}/")
            elif in_class:
                out.append("\\" + e if e in ']\\-[ntrxuU"' else ("\\" + e if e == "^" and class_start else e))
                if e == "^" and class_start:
                    raise _SchemaProblem(f"regex [\\^...] is not supported in /{pattern}/")
            elif e == ".":
                out.append("[.]")
            elif e in _KEEP_ESCAPED:
                out.append("\\" + e)
            else:
                out.append(e)
            class_start = False
            continue
        if in_class:
            if c == "]" and not class_start:
                in_class = False
            class_start = class_start and c == "^"
        elif c == "[":
            in_class, class_start = True, True
        out.append(c)
        i += 1
    return "".join(out)


def _prepare_patterns(node: Any) -> Any:
    """Anchor and translate every `pattern`, walking only schema keywords (not `const`/`enum`/`examples`).

    llama.cpp wants `^…$`; an unanchored pattern is anchored, which is stricter
    but every output still matches the original.
    """
    if not isinstance(node, dict):
        return node
    out = dict(node)
    pat = node.get("pattern")
    if isinstance(pat, str):
        if not pat.startswith("^"):
            pat = "^" + pat
        if not pat.endswith("$") or (pat.endswith("\\$") and not pat.endswith("\\\\$")):
            pat = pat + "$"
        out["pattern"] = "^" + _translate_regex(pat[1:-1]) + "$"
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            out[key] = {k: _prepare_patterns(v) for k, v in node[key].items()}
    for key in (*_SCHEMA_LISTS, "items"):
        if isinstance(node.get(key), list):
            out[key] = [_prepare_patterns(v) for v in node[key]]
    for key in _SCHEMA_SINGLE:
        if isinstance(node.get(key), dict):
            out[key] = _prepare_patterns(node[key])
    return out


class _SchemaChecker:
    """Structural checks the converter does not do, with messages that point at the problem."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.repeat_total = 0

    def check(self) -> str | None:
        if not isinstance(self.root, dict):
            return "a JSON schema must be an object"
        try:
            self.visit(self.root, "#", 0)
        except _SchemaProblem as exc:
            return str(exc)
        return None

    def visit(self, node: Any, path: str, depth: int) -> None:
        if depth > MAX_SCHEMA_DEPTH:
            raise _SchemaProblem(f"schema nested deeper than {MAX_SCHEMA_DEPTH} levels at {path}")
        if isinstance(node, bool):
            raise _SchemaProblem(f"boolean subschemas are not supported at {path}")
        if not isinstance(node, dict):
            raise _SchemaProblem(f"expected a schema object at {path}, got {type(node).__name__}")
        self.check_type(node.get("type"), path)
        if "$ref" in node:
            self.check_ref(node["$ref"], path)
        if "required" in node:
            req = node["required"]
            if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
                raise _SchemaProblem(f'"required" must be a list of property names at {path}')
        if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
            raise _SchemaProblem(f'"enum" must be a non-empty list at {path}')
        if "pattern" in node and not isinstance(node["pattern"], str):
            raise _SchemaProblem(f'"pattern" must be a string at {path}')
        if isinstance(node.get("pattern"), str):
            self.check_pattern(node["pattern"], path)
        for key in _BOUNDS:
            if key in node:
                self.check_bound(node, key, path)
        for key in ("minItems", "minLength"):
            high = key.replace("min", "max")
            if isinstance(node.get(key), int) and isinstance(node.get(high), int) and node[key] > node[high]:
                raise _SchemaProblem(f'"{key}" is greater than "{high}" at {path}')
        for key in _SCHEMA_MAPS:
            if key in node:
                sub = node[key]
                if not isinstance(sub, dict):
                    raise _SchemaProblem(f'"{key}" must be an object mapping names to schemas at {path}')
                for name, s in sub.items():
                    self.visit(s, f"{path}/{key}/{name}", depth + 1)
        for key in _SCHEMA_LISTS:
            if key in node:
                sub = node[key]
                if not isinstance(sub, list) or not sub:
                    raise _SchemaProblem(f'"{key}" must be a non-empty list of schemas at {path}')
                for i, s in enumerate(sub):
                    self.visit(s, f"{path}/{key}/{i}", depth + 1)
        for key in _SCHEMA_SINGLE:
            if key not in node:
                continue
            sub = node[key]
            if key == "additionalProperties" and isinstance(sub, bool):
                continue
            if key == "items" and isinstance(sub, list):  # draft-07 tuple form
                for i, s in enumerate(sub):
                    self.visit(s, f"{path}/items/{i}", depth + 1)
                continue
            self.visit(sub, f"{path}/{key}", depth + 1)

    def check_type(self, t: Any, path: str) -> None:
        if t is None:
            return
        types = t if isinstance(t, list) else [t]
        if not types:
            raise _SchemaProblem(f'"type" must not be empty at {path}')
        for one in types:
            if one not in _TYPES:
                raise _SchemaProblem(f"unknown type {json.dumps(one)} at {path} (expected one of {', '.join(_TYPES)})")

    def check_ref(self, ref: Any, path: str) -> None:
        if not isinstance(ref, str):
            raise _SchemaProblem(f'"$ref" must be a string at {path}')
        if not ref.startswith("#/"):
            raise _SchemaProblem(f"only local references like #/$defs/name are supported, got {ref!r} at {path}")
        target: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                raise _SchemaProblem(f"$ref {ref!r} at {path} points to nothing")
            target = target[part]
        if not isinstance(target, dict):
            raise _SchemaProblem(f"$ref {ref!r} at {path} does not point to a schema object")

    def add_repeat(self, n: int, path: str) -> None:
        if n > MAX_REPEAT_BOUND:
            raise _SchemaProblem(f"repetition bound {n} at {path} is above the supported {MAX_REPEAT_BOUND}")
        self.repeat_total += n
        if self.repeat_total > MAX_REPEAT_TOTAL:
            raise _SchemaProblem("schema too complex to enforce (too many repetitions in total)")

    def check_bound(self, node: dict[str, Any], key: str, path: str) -> None:
        v = node[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _SchemaProblem(f'"{key}" must be a non-negative integer at {path}')
        self.add_repeat(v, path)

    def check_pattern(self, pattern: str, path: str) -> None:
        for m in _QUANTIFIER_RE.finditer(pattern):
            for g in m.groups():
                if g:
                    self.add_repeat(int(g), path)


class _SchemaProblem(Exception):
    pass


# --------------------------------------------------------------------------- GBNF check

_WORD = re.compile(r"[a-zA-Z0-9-]+")
_INT = re.compile(r"[0-9]+")


class _GbnfParser:
    """A faithful, iterative port of llama.cpp's grammar parser (no tree, just rules as symbol lists).

    Rules are lists of alternatives; an alternative is a list of elements,
    each ("ref", rule_id) or ("term", None). Groups and repetitions become
    generated rules exactly as in llama.cpp, so the left-recursion check sees
    the same structure the native code does.
    """

    def __init__(self, src: str) -> None:
        self.src = src
        self.pos = 0
        self.symbols: dict[str, int] = {}
        self.rules: dict[int, list[list[tuple[str, int | None]]]] = {}

    def err(self, what: str) -> BadRequest:
        snippet = self.src[self.pos : self.pos + 30].split("\n")[0]
        return BadRequest(f"invalid grammar: {what} at {snippet!r} (offset {self.pos})", param="grammar")

    def symbol(self, name: str) -> int:
        return self.symbols.setdefault(name, len(self.symbols))

    def gen_symbol(self, base: str) -> int:
        new_id = len(self.symbols)
        self.symbols[f"{base}_{new_id}"] = new_id
        return new_id

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.src[i] if i < len(self.src) else ""

    def space(self, newline_ok: bool) -> None:
        s, n = self.src, len(self.src)
        while self.pos < n:
            c = s[self.pos]
            if c == "#":
                while self.pos < n and s[self.pos] not in "\r\n":
                    self.pos += 1
            elif c in " \t" or (newline_ok and c in "\r\n"):
                self.pos += 1
            else:
                break

    def name(self) -> str:
        m = _WORD.match(self.src, self.pos)
        if not m:
            raise self.err("expecting name")
        self.pos = m.end()
        return m.group()

    def int_(self) -> int:
        m = _INT.match(self.src, self.pos)
        if not m:
            raise self.err("expecting integer")
        self.pos = m.end()
        return int(m.group())

    def char(self) -> None:
        c = self.peek()
        if c == "\\":
            esc = self.peek(1)
            size = {"x": 2, "u": 4, "U": 8}.get(esc)
            if size:
                digits = self.src[self.pos + 2 : self.pos + 2 + size]
                if len(digits) != size or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise self.err(f"expecting {size} hex chars")
                self.pos += 2 + size
            elif esc and esc in 'trn\\"[]-':
                self.pos += 2
            else:
                raise self.err("unknown escape")
        elif c:
            self.pos += 1
        else:
            raise self.err("unexpected end of input")

    def token(self) -> None:
        # <[123]> token ids; <name> needs a vocabulary, which a validator does not have
        if self.peek() != "<":
            raise self.err("expecting '<'")
        self.pos += 1
        if self.peek() == "[":
            self.pos += 1
            self.int_()
            if self.peek() != "]":
                raise self.err("expecting ']'")
            self.pos += 1
            if self.peek() != ">":
                raise self.err("expecting '>'")
            self.pos += 1
            return
        raise self.err("token names need a model vocabulary; use <[id]>")

    def parse(self) -> None:
        self.space(True)
        while self.pos < len(self.src):
            self.rule()
        names = {v: k for k, v in self.symbols.items()}
        # like llama.cpp: every symbol up to the highest defined one needs a rule (a redefined
        # rule can orphan a name it used to reference), and every reference needs a rule
        for rid in range(max(self.rules, default=-1) + 1):
            if rid not in self.rules:
                raise BadRequest(f"invalid grammar: undefined rule identifier '{names[rid]}'", param="grammar")
        for alts in self.rules.values():
            for alt in alts:
                for kind, value in alt:
                    if kind == "ref" and value not in self.rules:
                        raise BadRequest(
                            f"invalid grammar: undefined rule identifier '{names[value]}'", param="grammar"
                        )
        if "root" not in self.symbols or self.symbols["root"] not in self.rules:
            raise BadRequest("invalid grammar: no 'root' rule", param="grammar")

    def rule(self) -> None:
        name = self.name()
        self.space(False)
        rule_id = self.symbol(name)
        if not self.src.startswith("::=", self.pos):
            raise self.err("expecting ::=")
        self.pos += 3
        self.space(True)
        self.alternates(name, rule_id)
        c = self.peek()
        if c == "\r":
            self.pos += 2 if self.peek(1) == "\n" else 1
        elif c == "\n":
            self.pos += 1
        elif c:
            raise self.err("expecting newline or end")
        self.space(True)

    def alternates(self, rule_name: str, rule_id: int) -> None:
        """Parse `seq | seq | …`; nested groups are handled with an explicit stack (no recursion limit)."""
        # frame: [rule_id, alternatives, current sequence, last_sym_start, n_prev_rules, nested]
        stack: list[list[Any]] = [[rule_id, [], [], 0, 1, False]]
        while True:
            frame = stack[-1]
            alts, seq, nested = frame[1], frame[2], frame[5]
            c = self.peek()
            if c == '"':
                self.pos += 1
                frame[3], frame[4] = len(seq), 1
                while self.peek() != '"':
                    if not self.peek():
                        raise self.err("unexpected end of input")
                    self.char()
                    seq.append(("term", None))
                self.pos += 1
                self.space(nested)
            elif c == "[":
                self.pos += 1
                if self.peek() == "^":
                    self.pos += 1
                frame[3], frame[4] = len(seq), 1
                empty = True  # llama.cpp emits nothing for `[]`, so a following `*` has no operand
                while self.peek() != "]":
                    if not self.peek():
                        raise self.err("unexpected end of input")
                    self.char()
                    empty = False
                    if self.peek() == "-" and self.peek(1) != "]":
                        if not self.peek(1):
                            raise self.err("unexpected end of input")
                        self.pos += 1
                        self.char()
                if not empty:
                    seq.append(("term", None))
                self.pos += 1
                self.space(nested)
            elif c in ("<", "!"):
                if c == "!":
                    self.pos += 1
                self.token()
                frame[3], frame[4] = len(seq), 1
                seq.append(("term", None))
                self.space(nested)
            elif c and _WORD.match(c):
                name = self.name()
                self.space(nested)
                frame[3], frame[4] = len(seq), 1
                seq.append(("ref", self.symbol(name)))
            elif c == "(":
                self.pos += 1
                self.space(True)
                sub_id = self.gen_symbol(rule_name)
                stack.append([sub_id, [], [], 0, 1, True])
                stack[-1].append(len(self.symbols) - 1)  # n_rules_before, for the repetition threshold
                continue
            elif c == ".":
                frame[3], frame[4] = len(seq), 1
                seq.append(("term", None))
                self.pos += 1
                self.space(nested)
            elif c in ("*", "+", "?"):
                self.pos += 1
                self.space(nested)
                self.repeat(frame, rule_name, {"*": (0, None), "+": (1, None), "?": (0, 1)}[c])
            elif c == "{":
                self.pos += 1
                self.space(nested)
                if not self.peek().isdigit():
                    raise self.err("expecting an int")
                lo = self.int_()
                self.space(nested)
                hi: int | None
                if self.peek() == "}":
                    hi = lo
                    self.pos += 1
                    self.space(nested)
                elif self.peek() == ",":
                    self.pos += 1
                    self.space(nested)
                    hi = self.int_() if self.peek().isdigit() else None
                    self.space(nested)
                    if self.peek() != "}":
                        raise self.err("expecting '}'")
                    self.pos += 1
                    self.space(nested)
                else:
                    raise self.err("expecting ','")
                if lo > MAX_GBNF_REPETITION:
                    raise self.err("number of repetitions exceeds sane defaults")
                if hi is not None and hi > MAX_GBNF_REPETITION:
                    hi = None
                self.repeat(frame, rule_name, (lo, hi))
            elif c == "|":
                alts.append(seq)
                frame[2], frame[3], frame[4] = [], 0, 1
                self.pos += 1
                self.space(True)
            else:
                # end of this sequence: close the group or the rule
                alts.append(seq)
                self.rules[frame[0]] = alts
                if not nested:
                    return
                n_before = frame[6]
                stack.pop()
                if self.peek() != ")":
                    raise self.err("expecting ')'")
                self.pos += 1
                parent = stack[-1]
                parent[3] = len(parent[2])
                parent[4] = max(1, len(self.symbols) - n_before)
                parent[2].append(("ref", frame[0]))
                self.space(parent[5])

    def repeat(self, frame: list[Any], rule_name: str, bounds: tuple[int, int | None]) -> None:
        """llama.cpp's `handle_repetitions`: S{m,n} → S…S (m times) + chain of optional generated rules."""
        lo, hi = bounds
        seq, last = frame[2], frame[3]
        if last == len(seq):
            raise self.err("expecting preceding item to */+/?/{")
        prev = seq[last:]
        total = hi if hi is not None and hi > 0 else (lo if lo > 0 else 1)
        if frame[4] * total > MAX_GBNF_REPETITION:
            raise self.err("too many repetitions of a complex rule")
        if lo == 0:
            del seq[last:]
        else:
            for _ in range(lo - 1):
                seq.extend(prev)
        n_opt = 1 if hi is None else hi - lo
        last_rec = None
        for i in range(n_opt):
            rec_id = self.gen_symbol(rule_name)
            body = list(prev)
            if hi is None:
                body.append(("ref", rec_id))
            elif i > 0:
                body.append(("ref", last_rec))
            self.rules[rec_id] = [body, []]
            last_rec = rec_id
        if n_opt > 0:
            seq.append(("ref", last_rec))
        frame[4] *= total


def _left_recursive_rule(rules: dict[int, list[list[tuple[str, int | None]]]]) -> int | None:
    """Find a rule that can derive itself at its left edge; returns its id, or None.

    Stricter than llama.cpp's `llama_grammar_detect_left_recursion`, on purpose:
    llama.cpp only treats a rule as nullable when one alternative is literally
    empty, so `a ::= b a` with `b ::= c`, `c ::= ` slips through and then
    `llama_grammar_advance_stack` expands forever until the process dies of
    std::bad_alloc. Here nullability is the real fixpoint, so every grammar
    llama.cpp rejects is rejected and so is every left recursion it misses.
    """
    nullable: set[int] = set()
    changed = True
    while changed:
        changed = False
        for rid, alts in rules.items():
            if rid not in nullable and any(all(k == "ref" and v in nullable for k, v in alt) for alt in alts):
                nullable.add(rid)
                changed = True
    # edges: rules reachable at the left edge (through nullable prefixes)
    edges: dict[int, list[int]] = {}
    for rid, alts in rules.items():
        targets: list[int] = []
        for alt in alts:
            for kind, value in alt:
                if kind != "ref":
                    break
                assert value is not None
                targets.append(value)
                if value not in nullable:
                    break
        edges[rid] = targets
    # iterative three-colour DFS for a cycle
    state: dict[int, int] = {}  # 1 = on the stack, 2 = done
    for start in rules:
        if start in state:
            continue
        stack = [(start, iter(edges[start]))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return nxt
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(edges[nxt])))
    return None


def validate_gbnf(grammar: str) -> None:
    """Raise BadRequest(param="grammar") unless llama.cpp will accept `grammar` (root rule "root")."""
    if not isinstance(grammar, str) or not grammar.strip():
        raise BadRequest("invalid grammar: empty", param="grammar")
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise BadRequest("invalid grammar: too large", param="grammar")
    if "\x00" in grammar:
        raise BadRequest("invalid grammar: contains a NUL character", param="grammar")
    parser = _GbnfParser(grammar)
    parser.parse()
    bad = _left_recursive_rule(parser.rules)
    if bad is not None:
        name = next(k for k, v in parser.symbols.items() if v == bad)
        raise BadRequest(f"invalid grammar: left recursion in rule '{name}'", param="grammar")
