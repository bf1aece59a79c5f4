"""Ollama prompt templates: a safe interpreter for a subset of Go's text/template.

Ollama's Modelfile `TEMPLATE` and the `template` field of `/api/generate` are
Go templates, for example::

    {{ if .System }}<|im_start|>system
    {{ .System }}<|im_end|>
    {{ end }}{{ if .Prompt }}<|im_start|>user
    {{ .Prompt }}<|im_end|>
    {{ end }}<|im_start|>assistant
    {{ .Response }}<|im_end|>

Templates can come straight from a request, so they are tokenized and
interpreted here (never translated to Python and evaluated), under the shared
render budget (`render_budget`: steps, a wall-clock deadline, output size,
and printf widths and function results checked before they are built). Supported: `{{ .Field.Chain }}`, `$`, `$var` and
`{{ $x := … }}` / `{{ $x = … }}`, trim markers `{{-` / `-}}`, comments,
`if` / `else if` / `else` / `end`, `range` (with `$i, $v :=`, `else`,
`break`, `continue`), `with`, pipelines `a | f`, parenthesised calls, string,
number, bool and nil literals, and the functions `eq ne lt le gt ge and or not
len index slice print printf json currentDate yesterdayDate`. `define`, `template`,
`block` and other functions raise `TemplateError`.

`render_go_template` follows Ollama's `template.Execute`: templates that use
`.Messages` get the whole conversation; older ones are executed once per
user/assistant turn, and the last execution stops right after `.Response` so
the prompt ends where the model's answer begins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, NoReturn

from flexi.prompt import render_budget as rb
from flexi.prompt.render_budget import RenderLimit, budget, check_size, check_width
from flexi.prompt.templates import TemplateError

__all__ = ["TemplateError", "is_go_template", "render_go_template"]

MAX_STEPS = rb.MAX_STEPS  # node executions and calls per render: nested ranges can multiply quickly
MAX_OUTPUT_CHARS = rb.MAX_OUTPUT_CHARS

_ERROR_PREFIX = "the prompt template could not be rendered: "

# --------------------------------------------------------------------------- detection

_GO_ACTION_RE = re.compile(
    r"\{\{-?\s*(?:\.|\$|/\*|(?:if|else|end|range|with|block|define|template|eq|ne|and|or|not|len|json|slice|index)\b)"
)


def is_go_template(text: str) -> bool:
    """Whether `text` looks like an Ollama (Go) template rather than a Jinja chat template.

    Go actions start with `.`, `$`, a keyword (`if`, `range`, `end`, …) or a
    function name; Jinja uses `{% … %}` for control flow and bare variable
    names, so `{%` rules Go out.
    """
    return "{%" not in text and bool(_GO_ACTION_RE.search(text))


# --------------------------------------------------------------------------- AST


@dataclass
class _Field:
    """`.A.B` (on dot), `$x.A.B` (on a variable) or `(pipe).A` (on a sub-pipeline)."""

    base: Any  # None = dot; str = variable name ("$", "$x"); _Pipe = parenthesised pipeline
    chain: tuple[str, ...]


@dataclass
class _Lit:
    value: Any


@dataclass
class _Func:
    name: str


@dataclass
class _Pipe:
    commands: list[list[Any]]  # each command: operands; a command starting with _Func is a call
    decl: list[str] = field(default_factory=list)
    assign: bool = False  # `=` rather than `:=`


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _If:
    branches: list[tuple[_Pipe, list[Any]]]
    else_body: list[Any] | None = None


@dataclass
class _Range:
    pipe: _Pipe
    body: list[Any]
    else_body: list[Any] | None = None


@dataclass
class _With:
    pipe: _Pipe
    body: list[Any]
    else_body: list[Any] | None = None


class _Break:
    pass


class _Continue:
    pass


def _fail(message: str) -> NoReturn:
    raise TemplateError(_ERROR_PREFIX + message)


# --------------------------------------------------------------------------- lexing

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)*')
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_]\w*)+)
  | (?P<dot>\.)
  | (?P<var>\$\w*(?:\.[A-Za-z_]\w*)*)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<op>[|(),])
  | (?P<ident>[A-Za-z_]\w*)
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _unquote(s: str) -> str:
    def repl(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] in "xuU":
            return chr(int(esc[1:], 16))
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        _fail(f"unknown escape sequence \\{esc} in {s}")

    return re.sub(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", repl, s[1:-1])


@dataclass
class _Tok:
    kind: str
    text: str
    spaced: bool  # preceded by whitespace (distinguishes `(x).F` from `(x) .F`)


def _tokenize(body: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, spaced = 0, True
    while pos < len(body):
        m = _TOKEN_RE.match(body, pos)
        if not m:
            _fail(f"unexpected {body[pos]!r} in action {{{{{body}}}}}")
        kind = m.lastgroup or ""
        if kind == "ws":
            spaced = True
        else:
            toks.append(_Tok(kind, m.group(), spaced))
            spaced = False
        pos = m.end()
    return toks


def _split_actions(text: str) -> list[tuple[str, str]]:
    """Split source into ("text", …) and ("action", body) items, applying `{{-` / `-}}` trimming."""
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            chunk = chunk.lstrip(" \t\r\n")
        if start < 0:
            if chunk:
                items.append(("text", chunk))
            return items
        i = start + 2
        if text.startswith("-", i) and i + 1 < len(text) and text[i + 1] in " \t\r\n":
            chunk = chunk.rstrip(" \t\r\n")
            i += 2
        if chunk:
            items.append(("text", chunk))
        end = _find_action_end(text, i)
        body = text[i:end]
        trim_next = False
        if re.search(r"[ \t\r\n]-$", body):  # ` -}}`: the dash needs whitespace before it
            trim_next = True
            body = body[:-2]
        items.append(("action", body))
        pos = end + 2


def _find_action_end(text: str, i: int) -> int:
    """Index of the `}}` closing the action starting at `i`, skipping quoted strings and comments."""
    n, start = len(text), i
    while i < n:
        c = text[i]
        if text.startswith("}}", i):
            return i
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                break
            i = j + 2
            continue
        if c in "\"'`":
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == "\n" and c != "`":
                    _fail(f"unterminated quoted string at offset {i}")
                j += 2 if text[j] == "\\" and c != "`" else 1
            if j >= n:
                break
            i = j + 1
            continue
        i += 1
    _fail(f"unclosed action starting at offset {start - 2}: missing '}}}}'")


# --------------------------------------------------------------------------- parsing


class _PipeParser:
    """Recursive descent over one action's tokens."""

    def __init__(self, toks: list[_Tok], source: str) -> None:
        self.toks = toks
        self.i = 0
        self.source = source

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            _fail(f"unexpected end of action {{{{{self.source}}}}}")
        self.i += 1
        return tok

    def done(self) -> bool:
        return self.i >= len(self.toks)

    def pipeline(self, allow_decl: bool = True, range_decl: bool = False) -> _Pipe:
        decl: list[str] = []
        assign = False
        if allow_decl:
            j = self.i
            names: list[str] = []
            while j < len(self.toks) and self.toks[j].kind == "var" and "." not in self.toks[j].text:
                names.append(self.toks[j].text)
                j += 1
                if range_decl and len(names) == 1 and j < len(self.toks) and self.toks[j].text == ",":
                    j += 1
                    continue
                break
            if names and j < len(self.toks) and self.toks[j].kind in ("declare", "assign"):
                decl, assign = names, self.toks[j].kind == "assign"
                self.i = j + 1
        commands: list[list[Any]] = []
        while True:
            cmd: list[Any] = []
            while (tok := self.peek()) is not None and tok.text not in ("|", ")"):
                cmd.append(self.operand())
            if not cmd:
                _fail(f"missing value in action {{{{{self.source}}}}}")
            commands.append(cmd)
            tok = self.peek()
            if tok is not None and tok.text == "|":
                self.i += 1
                continue
            return _Pipe(commands, decl, assign)

    def operand(self) -> Any:
        tok = self.take()
        kind, text = tok.kind, tok.text
        if kind == "field":
            return _Field(None, tuple(text[1:].split(".")))
        if kind == "dot":
            return _Field(None, ())
        if kind == "var":
            name, *chain = text.split(".")
            return _Field(name, tuple(chain))
        if kind == "str":
            return _Lit(_unquote(text))
        if kind == "raw":
            return _Lit(text[1:-1])
        if kind == "num":
            try:
                return _Lit(int(text, 0))
            except ValueError:
                return _Lit(float(text))
        if kind == "ident":
            if text in ("true", "false"):
                return _Lit(text == "true")
            if text == "nil":
                return _Lit(None)
            if text in _KEYWORDS:
                _fail(f"unexpected keyword {text!r} in action {{{{{self.source}}}}}")
            if text not in _FUNCS:
                _fail(f'function "{text}" is not supported')
            return _Func(text)
        if text == "(":
            inner = self.pipeline(allow_decl=False)
            if self.take().text != ")":
                _fail(f"unclosed parenthesis in action {{{{{self.source}}}}}")
            nxt = self.peek()
            if nxt is not None and nxt.kind == "field" and not nxt.spaced:
                self.i += 1
                return _Field(inner, tuple(nxt.text[1:].split(".")))
            return _Field(inner, ())
        if kind == "char":
            _fail("character constants are not supported")
        _fail(f"unexpected {text!r} in action {{{{{self.source}}}}}")


_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}


@dataclass
class _Frame:
    """An open block while parsing: where new nodes go and how `else` / `end` close it."""

    node: Any
    body: list[Any]


def _parse(text: str) -> list[Any]:
    root: list[Any] = []
    stack: list[_Frame] = []

    def body() -> list[Any]:
        return stack[-1].body if stack else root

    for kind, content in _split_actions(text):
        if kind == "text":
            body().append(_Text(content))
            continue
        stripped = content.strip()
        if stripped.startswith("/*"):
            if not stripped.endswith("*/"):
                _fail("comment must end with '*/' right before '}}'")
            continue
        toks = _tokenize(content)
        if not toks:
            _fail("empty action {{}}")
        head = toks[0].text if toks[0].kind == "ident" else ""
        p = _PipeParser(toks[1:] if head in _KEYWORDS else toks, content)

        if head == "if":
            node = _If([(p.pipeline(), [])])
            body().append(node)
            stack.append(_Frame(node, node.branches[0][1]))
        elif head in ("range", "with"):
            pipe = p.pipeline(range_decl=head == "range")
            node = _Range(pipe, []) if head == "range" else _With(pipe, [])
            body().append(node)
            stack.append(_Frame(node, node.body))
        elif head == "else":
            if not stack:
                _fail("unexpected {{else}} outside if/range/with")
            frame = stack[-1]
            node = frame.node
            if node.else_body is not None:
                _fail("unexpected {{else}} after {{else}}")
            nxt = p.peek()
            if nxt is not None and nxt.kind == "ident" and nxt.text in ("if", "with"):
                p.take()
                if nxt.text == "if" and isinstance(node, _If):
                    node.branches.append((p.pipeline(), []))
                    frame.body = node.branches[-1][1]
                elif nxt.text == "with" and isinstance(node, _With):
                    # `{{else with}}` is a with nested in the else branch, closed by the same {{end}}
                    inner = _With(p.pipeline(), [])
                    node.else_body = [inner]
                    frame.node, frame.body = inner, inner.body
                else:
                    _fail(f"{{{{else {nxt.text}}}}} is not allowed here")
            else:
                node.else_body = []
                frame.body = node.else_body
        elif head == "end":
            if not stack:
                _fail("unexpected {{end}}")
            stack.pop()
        elif head in ("break", "continue"):
            if not any(isinstance(f.node, _Range) for f in stack):
                _fail(f"{{{{{head}}}}} outside {{{{range}}}}")
            body().append(_Break() if head == "break" else _Continue())
        elif head in ("define", "template", "block"):
            _fail(f"{{{{{head}}}}} is not supported")
        else:
            pipe = p.pipeline()
            if not p.done():
                _fail(f"unexpected {p.peek().text!r} in action {{{{{content}}}}}")  # type: ignore[union-attr]
            body().append(_Action(pipe))
            continue
        if not p.done():
            _fail(f"unexpected {p.peek().text!r} in action {{{{{content}}}}}")  # type: ignore[union-attr]
    if stack:
        _fail("unexpected end of template: missing {{end}}")
    return root


@lru_cache(maxsize=64)
def _compile(text: str) -> tuple[Any, ...]:
    """Parse once per template string: Modelfile templates are reused for every request.

    Like Ollama's `Parse`, a template that uses neither `.Messages` nor
    `.Response` gets `{{ .Response }}` appended.
    """
    nodes = _parse(text)
    if not _mentions(nodes, "Messages") and not _mentions(nodes, "Response"):
        nodes.append(_Action(_Pipe([[_Field(None, ("Response",))]])))
    return tuple(nodes)


# --------------------------------------------------------------------------- values


def _truth(v: Any) -> bool:
    """Go's notion of "empty": false, 0, nil, and empty strings, lists and maps are false."""
    if v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def _to_text(v: Any) -> str:
    """Print a value the way Ollama's templates show it (maps and lists of tool data as JSON)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _get_field(obj: Any, name: str) -> Any:
    """`.Name` on a dict: Go field names map to the JSON keys Ollama uses (`ToolCalls` → `tool_calls`)."""
    if isinstance(obj, dict):
        for key in (name, name[:1].lower() + name[1:], _snake(name), name.lower()):
            if key in obj:
                return obj[key]
        return None
    if obj is None:
        return None
    _fail(f"can't evaluate field {name} in type {type(obj).__name__}")


# --------------------------------------------------------------------------- functions


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        _fail("eq: missing argument for comparison")
    return any(a == b for b in bs)


def _cmp(op: Callable[[Any, Any], bool], name: str) -> Callable[[Any, Any], bool]:
    def f(a: Any, b: Any) -> bool:
        try:
            return op(a, b)
        except TypeError:
            _fail(f"{name}: incompatible types for comparison")

    return f


def _len(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v)
    _fail(f"len of type {type(v).__name__}")


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        try:
            v = v[k]
        except (KeyError, IndexError, TypeError):
            if isinstance(v, dict):
                v = None
            else:
                _fail(f"index {k!r} out of range")
    return v


def _slice(v: Any, *idx: int) -> Any:
    if len(idx) > 2:
        _fail("slice: three-index slices are not supported")
    if not isinstance(v, (str, list, tuple)):
        _fail(f"can't slice type {type(v).__name__}")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
        _fail("slice: indices must be integers")
    start = idx[0] if idx else 0
    end = idx[1] if len(idx) > 1 else len(v)
    if not (0 <= start <= end <= len(v)):
        _fail(f"slice: index out of range [{start}:{end}] with length {len(v)}")
    return v[start:end]


def _json(v: Any) -> str:
    if isinstance(v, str):  # escaping can double a string (`"` and `\`): `$x = json $x` in a range
        check_size(2 * len(v) + 2, "json")
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _print(*args: Any) -> str:
    # Go's fmt.Sprint: a space between operands when neither is a string
    parts: list[str] = []
    size = 0
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            parts.append(" ")
        text = _to_text(a)
        size += len(text) + 1
        check_size(size, "print")
        parts.append(text)
    return "".join(parts)


_PRINTF_RE = re.compile(r"%([-+# 0]*\d*(?:\.\d+)?)([svdqtfgx%])")
_PRINTF_NUMBERS_RE = re.compile(r"\d+")


def _check_printf(fmt: str, args: tuple[Any, ...]) -> None:
    """Refuse `%01000000000d` (a gigabyte of zeros) and results beyond the size cap, before formatting."""
    padding = 0
    for m in _PRINTF_RE.finditer(fmt):
        for number in _PRINTF_NUMBERS_RE.findall(m.group(1)):
            width = int(number) if len(number) <= 18 else 10**18  # int() of thousands of digits is refused
            check_width(width, "printf")
            padding += width
    check_size(len(fmt) + padding + sum(len(a) if isinstance(a, str) else 32 for a in args), "printf")


def _printf(fmt: str, *args: Any) -> str:
    """Go's fmt.Sprintf for the verbs templates use: %s %v %d %q %t %f %g %x and %%."""
    it = iter(args)

    def repl(m: re.Match[str]) -> str:
        flags, verb = m.groups()
        if verb == "%":
            return "%"
        try:
            a = next(it)
        except StopIteration:
            return f"%!{verb}(MISSING)"
        if verb in "sv":
            return _to_text(a)
        if verb == "q":
            return json.dumps(_to_text(a), ensure_ascii=False)
        if verb == "t":
            return _to_text(bool(a))
        try:
            return ("%" + flags + verb).replace("%" + flags + "v", "%s") % a
        except (TypeError, ValueError):
            return f"%!{verb}({_to_text(a)})"

    if not isinstance(fmt, str):
        _fail("printf: format must be a string")
    _check_printf(fmt, args)
    return _PRINTF_RE.sub(repl, fmt)


_FUNCS: dict[str, Callable[..., Any]] = {
    "printf": _printf,
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "lt": _cmp(lambda a, b: a < b, "lt"),
    "le": _cmp(lambda a, b: a <= b, "le"),
    "gt": _cmp(lambda a, b: a > b, "gt"),
    "ge": _cmp(lambda a, b: a >= b, "ge"),
    "not": lambda a: not _truth(a),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _print,
    "json": lambda v: _json(v),
    "currentDate": lambda: date.today().isoformat(),
    "yesterdayDate": lambda: (date.today() - timedelta(days=1)).isoformat(),
    "and": lambda *a: a,  # short-circuited in _Exec.command
    "or": lambda *a: a,
}


# --------------------------------------------------------------------------- execution


class _BreakSignal(Exception):
    pass


class _ContinueSignal(Exception):
    pass


class _Exec:
    """Walk the AST once with a data root, writing into a list of strings."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.scopes: list[dict[str, Any]] = [{"$": data}]
        self.out: list[str] = []
        self.size = 0
        self.budget = rb.current() or rb.RenderBudget()

    def tick(self) -> None:
        """One unit of work: the shared budget counts steps and checks the wall-clock deadline."""
        self.budget.tick()

    def write(self, s: str) -> None:
        self.size += len(s)
        if self.size > MAX_OUTPUT_CHARS:
            _fail("the rendered prompt is too large")
        self.out.append(s)

    def var(self, name: str) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        _fail(f'undefined variable "{name}"')

    def set_var(self, name: str, value: Any, assign: bool) -> None:
        if assign:
            for scope in reversed(self.scopes):
                if name in scope:
                    scope[name] = value
                    return
            _fail(f'undefined variable "{name}"')
        self.scopes[-1][name] = value

    def operand(self, op: Any, dot: Any) -> Any:
        if isinstance(op, _Lit):
            return op.value
        if isinstance(op, _Func):  # a function used as a value: call it without arguments
            return self.call(op.name, [], dot, None)
        if isinstance(op, _Field):
            if op.base is None:
                value = dot
            elif isinstance(op.base, _Pipe):
                value = self.pipe(op.base, dot)
            else:
                value = self.var(op.base)
            for name in op.chain:
                value = _get_field(value, name)
            return value
        raise AssertionError(op)

    def call(self, name: str, args: list[Any], dot: Any, piped: tuple[Any] | None) -> Any:
        if name in ("and", "or"):
            values = [*args, *([piped[0]] if piped else [])]
            if not values:
                _fail(f"{name}: missing arguments")
            result: Any = None
            for a in values:
                result = self.operand(a, dot) if not isinstance(a, _Evaluated) else a.value
                if _truth(result) != (name == "and"):
                    return result
            return result
        evaluated = [self.operand(a, dot) for a in args]
        if piped:
            evaluated.append(piped[0].value)
        self.tick()
        try:
            result = _FUNCS[name](*evaluated)
        except TypeError:
            _fail(f"wrong number of arguments for {name}")
        if isinstance(result, (str, list, tuple, dict)):  # `$x = print $x $x` in a range doubles per step
            check_size(len(result), name)
        return result

    def command(self, cmd: list[Any], dot: Any, piped: tuple[Any] | None) -> Any:
        head = cmd[0]
        if isinstance(head, _Func):
            return self.call(head.name, cmd[1:], dot, piped)
        if len(cmd) > 1 or piped:
            _fail("can't give arguments to a non-function value")
        return self.operand(head, dot)

    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value: Any = None
        piped: tuple[Any] | None = None
        for cmd in pipe.commands:
            value = self.command(cmd, dot, piped)
            piped = (_Evaluated(value),)
        for name in pipe.decl[-1:]:
            self.set_var(name, value, pipe.assign)
        return value

    def run(self, nodes: Iterable[Any], dot: Any) -> None:
        for node in nodes:
            self.tick()
            if isinstance(node, _Text):
                self.write(node.text)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.write(_to_text(value))
            elif isinstance(node, _If):
                for cond, body in node.branches:
                    if _truth(self.pipe(cond, dot)):
                        self.block(body, dot)
                        break
                else:
                    if node.else_body is not None:
                        self.block(node.else_body, dot)
            elif isinstance(node, _With):
                value = self.pipe(node.pipe, dot)
                if _truth(value):
                    self.block(node.body, value)
                elif node.else_body is not None:
                    self.block(node.else_body, dot)
            elif isinstance(node, _Range):
                self.range(node, dot)
            elif isinstance(node, _Break):
                raise _BreakSignal
            elif isinstance(node, _Continue):
                raise _ContinueSignal

    def block(self, body: list[Any], dot: Any, bindings: dict[str, Any] | None = None) -> None:
        self.scopes.append(dict(bindings or {}))
        try:
            self.run(body, dot)
        finally:
            self.scopes.pop()

    def range(self, node: _Range, dot: Any) -> None:
        pipe = _Pipe(node.pipe.commands)  # declarations are bound per element, not to the whole value
        value = self.pipe(pipe, dot)
        items: Iterable[tuple[Any, Any]]  # lazy: `range 1000000` must not build a million tuples up front
        if value is None:
            items = ()
        elif isinstance(value, dict):
            items = ((k, value[k]) for k in sorted(value))
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            if value > MAX_STEPS:
                _fail("range count too large")
            items = ((i, i) for i in range(value))
        else:
            _fail(f"range can't iterate over {_to_text(value)!r}")
        if not value or (isinstance(value, int) and value < 0):
            if node.else_body is not None:
                self.block(node.else_body, dot)
            return
        decl = node.pipe.decl
        for key, elem in items:
            self.tick()  # an empty body must cost something too: nested empty ranges multiply
            bindings: dict[str, Any] = {}
            if len(decl) == 1:
                bindings[decl[0]] = elem
            elif len(decl) == 2:
                bindings[decl[0]], bindings[decl[1]] = key, elem
            try:
                self.block(node.body, elem, bindings)
            except _BreakSignal:
                break
            except _ContinueSignal:
                continue


@dataclass
class _Evaluated:
    """A value already computed (the output of the previous pipeline stage)."""

    value: Any


def _execute(nodes: Iterable[Any], data: dict[str, Any]) -> str:
    ex = _Exec(data)
    try:
        ex.run(nodes, data)
    except (TemplateError, _BreakSignal, _ContinueSignal):
        raise
    except RenderLimit as exc:
        _fail(str(exc))
    except RecursionError:
        _fail("the template nests too deeply")
    except Exception as exc:  # noqa: BLE001 - e.g. comparing a string with a number: the template's fault
        _fail(f"{type(exc).__name__}: {exc}")
    return "".join(ex.out)


# --------------------------------------------------------------------------- Ollama semantics


def _mentions(nodes: Iterable[Any], name: str) -> bool:
    """Whether any field or variable chain in the template uses `name` (Ollama's `Vars()` check)."""
    name = name.lower()

    def in_pipe(pipe: _Pipe) -> bool:
        for cmd in pipe.commands:
            for op in cmd:
                if isinstance(op, _Field):
                    if any(c.lower() == name for c in op.chain):
                        return True
                    if isinstance(op.base, _Pipe) and in_pipe(op.base):
                        return True
        return False

    def walk(ns: Iterable[Any]) -> bool:
        for n in ns:
            if isinstance(n, _Action) and in_pipe(n.pipe):
                return True
            if isinstance(n, _If) and (any(in_pipe(c) or walk(b) for c, b in n.branches) or walk(n.else_body or [])):
                return True
            if isinstance(n, (_Range, _With)) and (in_pipe(n.pipe) or walk(n.body) or walk(n.else_body or [])):
                return True
        return False

    return walk(nodes)


def _cut_after_response(nodes: Iterable[Any]) -> list[Any]:
    """Drop everything after the first printed `.Response`, as Ollama does for the last turn.

    The prompt must end exactly where the model's answer begins, so trailers
    like `<|im_end|>` after `{{ .Response }}` go. Conditions are not inspected
    (same as Ollama's `deleteNode`); the cut is static, in document order.
    """
    cut = False

    def pipe(p: _Pipe) -> _Pipe | None:
        nonlocal cut
        commands = []
        for cmd in p.commands:
            args = []
            for op in cmd:
                if cut:
                    continue
                if isinstance(op, _Field) and op.base is None and "Response" in op.chain:
                    cut = True
                args.append(op)
            if not args:
                return None
            commands.append(args)
        return _Pipe(commands, p.decl, p.assign) if commands else None

    def walk(ns: Iterable[Any]) -> list[Any]:
        out: list[Any] = []
        for n in ns:
            if cut:
                break
            if isinstance(n, _Action):
                new = pipe(n.pipe)
                if new is not None:
                    out.append(_Action(new))
            elif isinstance(n, _If):
                branches = [(c, walk(b)) for c, b in n.branches]
                out.append(_If(branches, walk(n.else_body) if n.else_body is not None else None))
            elif isinstance(n, (_Range, _With)):
                body = walk(n.body)
                else_body = walk(n.else_body) if n.else_body is not None else None
                out.append(type(n)(n.pipe, body, else_body))
            else:
                out.append(n)
        return out

    return walk(nodes)


def _collate(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Ollama's collate: join all system texts, merge consecutive same-role messages (not tool results)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        m = dict(m)
        m["content"] = m.get("content") or ""
        if m.get("role") == "system":
            system.append(m["content"])
        if out and out[-1].get("role") == m.get("role") and m.get("role") != "tool":
            out[-1]["content"] += "\n\n" + m["content"]
        else:
            out.append(m)
    return "\n\n".join(system), out


def render_go_template(
    text: str,
    *,
    system: str = "",
    prompt: str = "",
    response: str = "",
    messages: list[dict[str, Any]] | None = None,
    suffix: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    think: bool | None = None,
) -> str:
    """Render an Ollama template the way Ollama's `template.Execute` does.

    The conversation is `system` (if any) + `messages` + `prompt` as a user
    turn + `response` as an assistant turn. Templates that use `.Messages`
    see it all at once (plus `.System`, `.Tools`); older templates are run
    once per turn with `.System` / `.Prompt` / `.Response`, the last run cut
    after `.Response`. With `prompt` and `suffix` (fill-in-the-middle) the
    template gets `.Prompt` and `.Suffix` only. Raises `TemplateError` (400).
    """
    with budget():  # one budget for all turns of this render
        return _render(text, system=system, prompt=prompt, response=response, messages=messages, suffix=suffix,
                       tools=tools, think=think)


def _render(text: str, *, system: str, prompt: str, response: str, messages: list[dict[str, Any]] | None,
            suffix: str | None, tools: list[dict[str, Any]] | None, think: bool | None) -> str:
    try:
        nodes = _compile(text)
    except TemplateError:
        raise
    except RecursionError:
        _fail("the template nests too deeply")
    except Exception as exc:  # noqa: BLE001 - e.g. a \U escape beyond Unicode
        _fail(f"{type(exc).__name__}: {exc}")
    base: dict[str, Any] = {"Think": bool(think), "IsThinkSet": think is not None, "ThinkLevel": ""}

    if prompt and suffix:
        return _execute(nodes, {**base, "Prompt": prompt, "Suffix": suffix, "Response": ""})

    conversation: list[dict[str, Any]] = []
    if system:
        conversation.append({"role": "system", "content": system})
    conversation.extend(messages or [])
    if prompt:
        conversation.append({"role": "user", "content": prompt})
    if response:
        conversation.append({"role": "assistant", "content": response})
    joined_system, collated = _collate(conversation)

    if _mentions(nodes, "Messages"):
        data = {**base, "System": joined_system, "Messages": collated, "Tools": tools or [], "Response": ""}
        return _execute(nodes, data)

    out: list[str] = []
    sys_text = prompt_text = response_text = ""

    def run_turn() -> None:
        nonlocal sys_text, prompt_text, response_text
        data = {**base, "System": sys_text, "Prompt": prompt_text, "Response": response_text, "Tools": tools or []}
        out.append(_execute(nodes, data))
        sys_text = prompt_text = response_text = ""

    for m in collated:
        role, content = m.get("role"), m.get("content") or ""
        if role == "system":
            if prompt_text or response_text:
                run_turn()
            sys_text = content
        elif role == "user":
            if response_text:
                run_turn()
            prompt_text = content
        elif role == "assistant":
            response_text = content
    final = {**base, "System": sys_text, "Prompt": prompt_text, "Response": response_text, "Tools": tools or []}
    out.append(_execute(_cut_after_response(nodes), final))
    return "".join(out)
