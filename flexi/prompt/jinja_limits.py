"""A Jinja sandbox whose every loop, call and allocation is paid for from the render budget.

`ImmutableSandboxedEnvironment` stops code execution, not denial of service.
This module closes the gaps a hostile template can use to freeze a worker or
allocate gigabytes:

- loops: the compiler wraps every `for` iterable (lists, strings, dicts,
  recursive `loop(...)` calls, not only `range`) in an iterator that ticks the
  budget per item, so the wall-clock deadline is checked inside the loop;
- calls, filters and `~`: tick, and refuse results beyond `MAX_VALUE_CHARS`;
- containers whose printed form would be huge (`[s]*999999` holds a million
  references to one big string) are refused wherever Python would turn them
  into text: output, `~`, `%`, `str.format`, and any filter or call argument;
- operations that allocate in one C call are checked *before* they run:
  `* ** + %` on ints and sequences, `ljust rjust center zfill expandtabs
  replace join translate to_bytes` on str/bytes/int, `{:N}` format specs,
  `%N` printf-style widths, and the filters `center indent replace join
  wordwrap batch slice format sum tojson` and the global `lipsum`.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import update_wrapper
from typing import Any, ClassVar

import jinja2
import jinja2.filters
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup

from flexi.prompt import render_budget as rb
from flexi.prompt.render_budget import RenderLimit, check_int_bits, check_size, check_width, tick

__all__ = ["BudgetedSandbox", "MAX_POWER_EXPONENT", "MAX_SEQUENCE_LENGTH"]

MAX_SEQUENCE_LENGTH = 1_000_000  # result of `str * n` / `list * n`
MAX_POWER_EXPONENT = 1_000  # `a ** b`
MAX_JSON_INDENT = 64  # `tojson(indent=N)`; HF templates use 2 or 4
MAX_JSON_SEPARATOR = 16  # characters of `tojson(separators=...)`

_SEQUENCES = (str, bytes, list, tuple)


# --------------------------------------------------------------------------- value checks

_DICT_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_CONTAINERS = (list, tuple, set, frozenset, dict, Namespace, *_DICT_VIEWS)


def text_size(value: Any, memo: dict[int, tuple[Any, int]] | None = None) -> int:
    """About `len(str(value))`, without building it: containers are walked once per render (memoised by
    identity, so shared references cost nothing to walk), stopping early past the size cap."""
    if type(value) is str or isinstance(value, str):
        return len(value)
    if isinstance(value, bytes):
        return 4 * len(value) + 3
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return value.bit_length() * 31 // 100 + 2
    if not isinstance(value, _CONTAINERS):
        return 64  # floats, loop contexts, generators, ...: a short repr
    if memo is None:
        b = rb.current()
        memo = b.sizes if b is not None else {}
    hit = memo.get(id(value))
    if hit is not None:
        return hit[1]
    memo[id(value)] = (value, 8)  # met again while walking it: a cycle, printed as `[...]`
    if isinstance(value, Namespace):
        value = value._Namespace__attrs  # type: ignore[attr-defined]
    pairs = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    total = 2
    for key, item in pairs:
        tick()
        total += text_size(key, memo) + text_size(item, memo) + 4
        if total > rb.MAX_VALUE_CHARS:
            break
    memo[id(value)] = (value, total)
    return total


def check_text(value: Any, what: str) -> None:
    """Refuse turning `value` into text when that text would exceed the size cap."""
    if isinstance(value, _CONTAINERS):
        check_size(text_size(value), what)


def check_args(args: Iterable[Any], kwargs: Mapping[str, Any], what: str) -> None:
    for a in args:
        check_text(a, what)
    for a in kwargs.values():
        check_text(a, what)


def finalize(value: Any) -> Any:
    """`{{ value }}`: a list of a million references to one string must not be printed."""
    check_text(value, "printing a value")
    return value


def checked(value: Any) -> Any:
    """Refuse a value a render built that is larger than any prompt can be; tick once."""
    tick()
    if isinstance(value, (str, bytes)):
        check_size(len(value), "a value the template built")
    elif isinstance(value, (list, tuple, dict)):
        check_items(len(value), "a value the template built")
    elif isinstance(value, int) and not isinstance(value, bool):
        check_int_bits(value.bit_length(), "an integer the template built")
    return value


def budgeted_iter(iterable: Any) -> Iterator[Any]:
    """What every `{% for %}` iterates: one budget tick per item, whatever the iterable."""
    b = rb.current()
    for item in iterable:
        if b is not None:
            b.tick()
        yield item


_PERCENT_RE = re.compile(rb"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?([a-zA-Z%])")


def check_percent_format(fmt: str | bytes, args: Any = (), what: str = "the % operator") -> None:
    """`'%0999999999d' % 1` would allocate a gigabyte: refuse widths and precisions beyond `MAX_WIDTH`,
    and results (format + padding + arguments as text) beyond the size cap."""
    data = fmt.encode("utf-8", "surrogatepass") if isinstance(fmt, str) else fmt
    specs = padding = 0
    for m in _PERCENT_RE.finditer(data):
        specs += 1
        for part in (m.group(1), m.group(2)):
            if part == b"*":
                raise RenderLimit(f"{what}: '*' widths are not supported in templates")
            if part:
                width = int(part) if len(part) <= 18 else 10**18
                check_width(width, what)
                padding += width
    # a mapping's values can be named by many specs: count the whole mapping once per spec
    arg_text = text_size(args) * (specs if isinstance(args, Mapping) else 1)
    check_size(len(fmt) + padding + arg_text, what)


_DIGITS_RE = re.compile(r"\d+")


def check_format_spec(spec: str, what: str = "str.format") -> None:
    """A `{:N}` spec (after nested fields are filled in): no number in it may exceed `MAX_WIDTH`."""
    for m in _DIGITS_RE.finditer(spec):
        if len(m.group()) > 6 or int(m.group()) > rb.MAX_WIDTH:
            raise RenderLimit(f"{what}: width or precision {m.group()[:12]} is larger than the limit of {rb.MAX_WIDTH}")


def check_items(n: int, what: str) -> None:
    """Lists cost 8+ bytes per item: they get the repetition cap, not the character cap."""
    if n > MAX_SEQUENCE_LENGTH:
        raise RenderLimit(f"{what} would have too many items ({n}; the limit is {MAX_SEQUENCE_LENGTH})")


def _replace_size(s: str | bytes, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(old, (str, bytes)) or not isinstance(new, (str, bytes)):
        return len(s)
    hits = len(s) + 1 if not old else s.count(old)  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def _join_size(sep: str | bytes, items: list[Any]) -> int:
    return len(sep) * max(len(items) - 1, 0) + sum(len(x) for x in items if isinstance(x, (str, bytes)))


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def precheck_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a builtin method call that allocates in one step; returns the (possibly materialised) args."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, (str, bytes)):
        what = f"{type(owner).__name__}.{name}"
        if name in ("ljust", "rjust", "center", "zfill"):
            check_width(_arg(args, kwargs, 0, "width"), what)
        elif name == "expandtabs":
            size = _arg(args, kwargs, 0, "tabsize", 8)
            check_width(size, what)
            if isinstance(size, int):
                check_size(len(owner) + owner.count(b"\t" if isinstance(owner, bytes) else "\t") * size, what)
        elif name == "replace":
            check_size(_replace_size(owner, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"),
                                     _arg(args, kwargs, 2, "count", -1)), what)
        elif name == "join" and args:
            items = list(budgeted_iter(args[0]))
            check_size(_join_size(owner, items), what)
            return (items, *args[1:])
        elif name == "translate" and args and isinstance(args[0], dict):
            longest = max((len(v) for v in args[0].values() if isinstance(v, (str, bytes))), default=1)
            check_size(len(owner) * max(longest, 1), what)
    elif isinstance(owner, int) and name == "to_bytes":
        length = _arg(args, kwargs, 0, "length", 1)
        if isinstance(length, int):
            check_size(length, "int.to_bytes")
    return args


# --------------------------------------------------------------------------- operators


def guarded_binop(operator_: str, left: Any, right: Any) -> Any:
    """`* ** + %` with their result size checked before Python computes it."""
    if operator_ == "+":  # the hot path: chat templates glue strings with `+`
        if type(left) is str and type(right) is str:
            if len(left) + len(right) > rb.MAX_VALUE_CHARS:
                check_size(len(left) + len(right), "a + b")
            return left + right
        if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            check_items(len(left) + len(right), "a + b")
        elif isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            check_size(len(left) + len(right), "a + b")
        return operator.add(left, right)
    if operator_ == "**":
        if isinstance(right, (int, float)) and abs(right) > MAX_POWER_EXPONENT:
            raise RenderLimit("exponent too large")
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            check_int_bits(left.bit_length() * right, "a ** b")
        return left**right
    if operator_ == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE_LENGTH:
                raise RenderLimit("sequence repetition too large")
        if isinstance(left, int) and isinstance(right, int):
            check_int_bits(left.bit_length() + right.bit_length(), "a * b")
        return operator.mul(left, right)
    if operator_ == "%":
        if isinstance(left, (str, bytes)):
            check_percent_format(left, right)
        return operator.mod(left, right)
    raise AssertionError(operator_)


def checked_concat(join: Any, items: tuple[Any, ...]) -> Any:
    """`a ~ b ~ c`: the joined size is known before joining."""
    tick()
    check_size(sum(text_size(x) for x in items), "a ~ b")
    return join(items)


# --------------------------------------------------------------------------- formatters


class _SizeCountingFormatter:
    """Mixin: `'{0}{0}{0}…'.format(s)` is counted field by field before the result is joined."""

    _total = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> Any:
        self._total = len(format_string)
        return super().vformat(format_string, args, kwargs)  # type: ignore[misc]

    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(format_spec)
        self._total += text_size(value) + sum(int(n) for n in _DIGITS_RE.findall(format_spec))
        check_size(self._total, "str.format")
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _LimitedFormatter(_SizeCountingFormatter, SandboxedFormatter):
    pass


class _LimitedEscapeFormatter(_SizeCountingFormatter, SandboxedEscapeFormatter):
    pass


# --------------------------------------------------------------------------- filters and globals


def _center(value: Any, width: int = 80) -> str:
    check_width(width, "center")
    return jinja2.filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    pad = len(width) if isinstance(width, str) else width
    if isinstance(pad, int):
        check_width(pad, "indent")
        check_size(len(str(s)) + (str(s).count("\n") + 1) * pad, "indent")
    return jinja2.filters.do_indent(s, width, first, blank)


@jinja2.pass_eval_context
def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    check_size(_replace_size(str(s), old, new, -1 if count is None else count), "replace")
    return jinja2.filters.do_replace(eval_ctx, s, old, new, count)


@jinja2.pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(budgeted_iter(value))
    if isinstance(d, str):
        check_size(_join_size(d, items), "join")
    return jinja2.filters.do_join(eval_ctx, items, d, attribute)


@jinja2.pass_environment
def _wordwrap(environment: Any, s: str, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    sep = wrapstring if isinstance(wrapstring, str) else "\n"
    check_size(len(str(s)) * (1 + len(sep)) + len(sep), "wordwrap")
    return jinja2.filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if isinstance(linecount, int):
        check_size(linecount, "batch")
    return jinja2.filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    check_width(slices, "slice")
    return jinja2.filters.do_slice(value, slices, fill_with)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    check_percent_format(str(value), kwargs or args, "format")
    return jinja2.filters.do_format(value, *args, **kwargs)


@jinja2.pass_environment
def _sum(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    """`sum` that adds with the checked `+` (summing lists is quadratic otherwise)."""
    if attribute is not None:
        iterable = map(jinja2.filters.make_attrgetter(environment, attribute), iterable)
    total = start
    for item in budgeted_iter(iterable):
        total = guarded_binop("+", total, item)
    return total


def _tojson(value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    """HF's `tojson` (keeps non-ASCII text), built chunk by chunk against the size budget."""
    if indent is not None:
        if not isinstance(indent, int) or indent > MAX_JSON_INDENT:
            raise RenderLimit(f"tojson: indent must be a number up to {MAX_JSON_INDENT}")
    seps = tuple(separators) if separators is not None else None
    if seps is not None and sum(len(str(s)) for s in seps) > MAX_JSON_SEPARATOR:
        raise RenderLimit(f"tojson: separators longer than {MAX_JSON_SEPARATOR} characters")
    try:
        encoder = json.JSONEncoder(ensure_ascii=False, indent=indent, separators=seps, sort_keys=sort_keys)
        parts: list[str] = []
        size = 0
        for chunk in encoder.iterencode(value):
            size += len(chunk)
            check_size(size, "tojson")
            parts.append(chunk)
        return "".join(parts)
    except (TypeError, ValueError) as exc:
        raise jinja2.exceptions.TemplateError(f"tojson: {exc}") from None


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    for value, what in ((n, "lipsum n"), (min, "lipsum min"), (max, "lipsum max")):
        if isinstance(value, int) and value > 1000:
            raise RenderLimit(f"{what} must be at most 1000")
    return generate_lorem_ipsum(n, html, min, max)


def _guarded_filter(name: str, f: Any) -> Any:
    """Any filter may turn its arguments into text (`string`, `lower`, `int`, ...): check them first."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_args(args, kwargs, f"the {name} filter")
        return f(*args, **kwargs)

    return update_wrapper(guarded, f)  # keeps `jinja_pass_arg` (pass_context & co.)


LIMITED_FILTERS: dict[str, Any] = {
    "center": _center,
    "indent": _indent,
    "replace": _replace,
    "join": _join,
    "wordwrap": _wordwrap,
    "batch": _batch,
    "slice": _slice,
    "format": _format,
    "sum": _sum,
    "tojson": _tojson,
}


# --------------------------------------------------------------------------- compiler


class BudgetCodeGenerator(CodeGenerator):
    """Jinja's compiler with budget hooks for filters and `~` (loops are rewritten in `_parse`)."""

    def visit_Filter(self, node: nodes.Filter, frame: Frame) -> None:  # noqa: N802 - Jinja's visitor naming
        self.write("environment.flexi_checked(")
        super().visit_Filter(node, frame)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.flexi_concat({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


# --------------------------------------------------------------------------- environment


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus the render budget (steps, deadline, sizes)."""

    code_generator_class = BudgetCodeGenerator
    intercepted_binops: ClassVar[frozenset[str]] = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=finalize, **options)
        self.filters.update(LIMITED_FILTERS)
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items()}
        self.globals["lipsum"] = _lipsum
        self.globals["range"] = _budgeted_range

    # called by the generated code
    flexi_iter = staticmethod(budgeted_iter)
    flexi_checked = staticmethod(checked)
    flexi_concat = staticmethod(checked_concat)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        # Jinja forbids custom node types: `for x in it` becomes `for x in flexi_iter(it)`, a sandboxed call.
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("flexi_iter"), [loop.iter], [], None, None,
                                   lineno=loop.iter.lineno)
        return tree

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        return guarded_binop(operator_, left, right)  # only intercepted operators come here

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        tick()
        if __obj is budgeted_iter:  # a `for` loop's iterable: iterating prints nothing, no size walk needed
            return budgeted_iter(*args)
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive for: budget it too
            args = (budgeted_iter(args[0]), *args[1:])
        args = precheck_method(__obj, args, kwargs)
        check_args(args, kwargs, getattr(__obj, "__name__", "a call"))
        return checked(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        """The sandbox's safe `str.format`, with `{:N}` widths checked before formatting."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self = value.__self__
        formatter = (_LimitedEscapeFormatter(self, escape=f_self.escape) if isinstance(f_self, Markup)
                     else _LimitedFormatter(self))
        is_format_map = value.__name__ == "format_map"
        str_type = type(f_self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)


def _budgeted_range(*args: int) -> range:
    """`range()` with a per-render item budget: `range(n)|list` materialises before any loop ticks."""
    rng = range(*args)
    b = rb.current()
    if b is not None:
        b.range_items_left -= len(rng)
        if b.range_items_left < 0:
            raise RenderLimit("the template iterates too many times (range budget exhausted)")
    elif len(rng) > rb.MAX_STEPS:
        raise RenderLimit("range too big")
    return rng
