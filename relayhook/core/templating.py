"""The one template language: Jinja, sandboxed, compiled once when config loads.

A template that is a single `{{ expression }}` keeps the expression's native type (a dict stays a
dict, 75 stays 75); anything else renders to a string; a string with no `{{` or `{%` is a constant.

    >>> compile_value("{{ row.score }}", "data.score").render({"row": {"score": 75}})
    75
    >>> compile_value("user {{ id }}", "subject").render({"id": 7})
    'user 7'

The sandbox is immutable (no `.append`, no `.update`), strict about undefined names, has no loader
(no `include`/`import`), and bounds what a hostile template can make the process do: `range` and
loops share an iteration budget per render, `*`, `**` and `+` refuse results past a size, and a
render has a CPU-time budget (MAX_RENDER_SECONDS; `time_budget` sets a shorter one for a whole
request at ingest): past it the render ends with a RenderError, the process goes on. Regexes run
on RE2 (core/regex.py), in time linear in the text.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from relayhook.core.filters import (
    dotted,
    epoch_ms,
    epoch_s,
    flatten,
    path_segment,
    regex_search,
    unfilled_placeholders,
)
from relayhook.core.regex import RegexError, compile_regex
from relayhook.core.shortcuts import Miss, shortcut_expression, shortcut_text
from relayhook.errors import RelayhookError

__all__ = ["dotted", "epoch_ms", "epoch_s", "flatten", "path_segment"]  # filters, re-exported

MAX_STRING = 1 << 20  # characters (or items) a `*` or `+` may produce
MAX_INT_BITS = 4096  # size of an integer a `**` or `*` may produce
MAX_ITERATIONS = 100_000  # loop iterations per render, all loops together
MAX_OUTPUT = 8 << 20  # characters one render may output
MAX_RENDER_SECONDS = 0.5  # CPU time one render may take (loops, calls, filters are checked)
_TICKS = 256  # loop iterations between two looks at the CPU clock
_CALL = 16  # what a call or a filter weighs against _TICKS (each is bounded by the size limits)
REGEX_FILTERS = frozenset({"regex_search"})  # filters whose first argument is a pattern

_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")
# The CPU-clock deadline of every render in the block (time_budget): one request at ingest.
_deadline: contextvars.ContextVar[_Outer | None] = contextvars.ContextVar(
    "render_deadline", default=None
)


class TemplateError(RelayhookError):
    """A template does not compile. `name` is the key it came from, `line` its line in it."""

    def __init__(self, name: str, message: str, line: int = 1) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.line = line


class RenderError(RelayhookError):
    """A template failed on this input: an undefined name, a type error, a sandbox refusal."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class _Outer:
    """The budget of a block of renders (time_budget): CPU seconds, counted from the block's
    first look at the clock, and the work done since the last look, shared by its renders."""

    __slots__ = ("seconds", "deadline", "ticks")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None
        self.ticks = _TICKS


class _Budget:
    """What one render may still do: loop iterations, characters of output, CPU time. The
    clock is read once _TICKS of work (loop iterations; a call or filter weighs _CALL) have
    been done since the last read, counted over the whole block when there is one: reading
    a thread's CPU clock is a system call, too dear for every small render of a request."""

    __slots__ = ("iterations", "characters", "ticks", "deadline", "outer")

    def __init__(self, outer: _Outer | None) -> None:
        self.iterations = MAX_ITERATIONS
        self.characters = MAX_OUTPUT
        self.ticks = _TICKS
        self.deadline: float | None = None
        self.outer = outer  # the block around this render (a request at ingest), if any

    def tick(self, weight: int) -> None:
        counter = self.outer if self.outer is not None else self
        counter.ticks -= weight
        if counter.ticks > 0:
            return
        counter.ticks = _TICKS
        now = time.thread_time()
        if self.deadline is None:
            self.deadline = now + MAX_RENDER_SECONDS
        limit = self.deadline
        if self.outer is not None:
            if self.outer.deadline is None:
                self.outer.deadline = now + self.outer.seconds
            limit = min(limit, self.outer.deadline)
        if now > limit:
            raise SecurityError(
                "the render took more than its CPU time budget "
                f"({MAX_RENDER_SECONDS} s, less at ingest)"
            )


def _charge(iterations: int = 0, characters: int = 0, weight: int = 0) -> None:
    budget = _budget.get(None)
    if budget is None:
        return
    budget.iterations -= iterations
    budget.characters -= characters
    if budget.iterations < 0:
        raise SecurityError(f"more than {MAX_ITERATIONS} loop iterations in one render")
    if budget.characters < 0:
        raise SecurityError(f"more than {MAX_OUTPUT} characters of output in one render")
    if iterations or weight:
        budget.tick(weight or iterations)


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Every render in the block ends (RenderError) once the thread has used `seconds` of CPU
    time since the block's first look at the clock (after at most _TICKS of work): the ingress
    runs a request's mapping and hooks' conditions under one, so a provider cannot hold the
    event loop."""
    token = _deadline.set(_Outer(seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def _budgeted_range(*args: int) -> range:
    items = range(*args)
    _charge(iterations=len(items))
    return items


def _budgeted_loop(iterable: Any) -> Iterator[Any]:
    # Every `{% for %}` iterates through this (see _BudgetLoops), so nested loops over long
    # strings or lists cannot spin for minutes.
    for item in iterable:
        _charge(iterations=1)
        yield item


def _data_only(values: Any, depth: int = 3) -> None:
    """Refuse a function, method or class where data is due: written out through `~`, `%`,
    `format` or a filter it would deliver its Python name (`{{ '%s' % range }}`). Looks into
    small lists and objects (`[range] | join`): one a template built, not a payload's."""
    for value in values:
        if callable(value) and not isinstance(value, jinja2.Undefined):
            raise SecurityError(f"a template works on data, not on {_kind_of(value)}")
        if depth and isinstance(value, list | tuple | dict) and len(value) <= 64:
            _data_only(value.values() if isinstance(value, dict) else value, depth - 1)


def _kind_of(value: Any) -> str:
    return "a class" if isinstance(value, type) else f"a {type(value).__name__}"


def _checked_concat(*parts: Any) -> str:
    # `a ~ b`: the result may not pass MAX_STRING, so a chain of `~` cannot double its way up.
    _data_only(parts)
    texts = [str(part) for part in parts]
    if sum(map(len, texts)) > MAX_STRING:
        raise SecurityError("the result of `~` is too large")
    return "".join(texts)


class _BudgetLoops(NodeTransformer):
    """Rewrites a parsed template: loops iterate through `_budgeted_loop`, `~` goes through
    `_checked_concat`. The names are globals of the environment."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.Name("_budgeted_loop", "load"), [node.iter], [], None, None
        ).set_lineno(node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        call = nodes.Call(nodes.Name("_checked_concat", "load"), node.nodes, [], None, None)
        return call.set_lineno(node.lineno)


def _size(value: Any) -> int:
    """Characters (and items) a value holds, one level deep: `['a' * 10**6] * 20` is big."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(item) for item in value if isinstance(item, str))
    return 0


def _too_big(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value.bit_length() > MAX_INT_BITS
    return _size(value) > MAX_STRING


def _size_of_power(left: Any, right: Any) -> float:
    if not isinstance(left, int | float) or not isinstance(right, int | float):
        return 0.0
    if abs(left) <= 1 or right <= 0:
        return 0.0
    return math.log2(abs(left)) * right


def _size_of_product(left: Any, right: Any) -> int:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            return _size(seq) * times
    return 0


_WIDE_FORMAT = re.compile(r"\d{7,}")  # a width or precision of a million or more


def _check_width(*values: Any) -> None:
    """Refuse padding widths and format strings that would allocate megabytes up front."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_STRING:
            raise SecurityError(f"{value} is too large a width or count")
        if isinstance(value, str) and _WIDE_FORMAT.search(value):
            raise SecurityError("a format with a width of a million or more")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        count = text.count(old) if old else len(text) + 1
        if len(text) + count * len(new) > MAX_STRING:
            raise SecurityError("the result of replace() is too large")


def _check_join(separator: str, items: list[Any]) -> None:
    size = sum(len(str(item)) for item in items) + len(separator) * max(len(items) - 1, 0)
    if size > MAX_STRING:
        raise SecurityError("the result of join() is too large")


def _check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """Checks a call of a str method; returns args with a join()'s items made a list."""
    method = getattr(method, "__wrapped__", method)  # the sandbox wraps str.format
    target = getattr(method, "__self__", None)
    if not isinstance(target, str):
        return list(args)
    name = getattr(method, "__name__", "")
    _check_width(*args, *kwargs.values())
    if name == "expandtabs" and args and isinstance(args[0], int):
        _check_width(len(target) * args[0])
    if name in ("format", "format_map"):
        _check_width(target)
    if name == "replace" and len(args) >= 2:
        _check_replace(target, args[0], args[1])
    if name == "join" and args:
        items = list(args[0])
        _check_join(target, items)
        return [items, *args[1:]]
    return list(args)


def _bounded_filters(filters: dict[str, Any]) -> None:
    """Wrap the built-in filters that can amplify their input."""

    def center(value: Any, width: int = 80) -> str:
        _check_width(width)
        return str(filters_center(value, width))

    def indent(text: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        lines = str(text).count("\n") + 1
        if len(str(text)) + lines * (width if isinstance(width, int) else len(width)) > MAX_STRING:
            raise SecurityError("the result of indent() is too large")
        return str(filters_indent(text, width, first, blank))

    @pass_eval_context
    def join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
        items = list(value)
        _check_join(str(d), items)
        return str(filters_join(eval_ctx, items, d, attribute))

    @pass_eval_context
    def replace(eval_ctx: Any, s: Any, old: str, new: str, count: int | None = None) -> str:
        _check_replace(str(s), old, new)
        return str(filters_replace(eval_ctx, s, old, new, count))

    def format_(value: Any, *args: Any, **kwargs: Any) -> str:
        _check_width(value, *args, *kwargs.values())
        return str(filters_format(value, *args, **kwargs))

    filters_center, filters_indent = filters["center"], filters["indent"]
    filters_join, filters_replace = filters["join"], filters["replace"]
    filters_format = filters["format"]
    filters.update(center=center, indent=indent, join=join, replace=replace, format=format_)
    for name, function in list(filters.items()):
        filters[name] = _checked_result(function, name)


def _is_jinja_context(value: Any) -> bool:
    # What Jinja passes first to a pass_context / pass_eval_context filter.
    return isinstance(value, jinja2.runtime.Context | nodes.EvalContext)


def _checked_result(function: Any, name: str) -> Any:
    """A filter whose result may not pass the size limits (`format` with ten 1 MiB args)."""

    @functools.wraps(function)  # keeps jinja_pass_arg: context/eval-context filters stay so
    def checked(*args: Any, **kwargs: Any) -> Any:
        _charge(weight=_CALL)
        _data_only(arg for arg in args if not _is_jinja_context(arg))
        _data_only(kwargs.values())
        result = function(*args, **kwargs)
        if _too_big(result):
            raise SecurityError(f"the result of the {name} filter is too large")
        return result

    return checked


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with dict keys before attributes (`body.items` is the payload's
    `items`, not dict.items) and limits on everything that can make a render blow up."""

    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def compile(
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        # Every template and expression (compile_expression hands over a parsed tree) is
        # rewritten here, once, before code generation.
        tree = self._parse(source, name, filename) if isinstance(source, str) else source
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            # There is no loader: say so when the connector loads, not at the first request.
            raise jinja2.TemplateSyntaxError(
                "include, import and extends are not available", node.lineno, name, filename
            )
        _check_patterns(tree, name, filename)
        rewritten = _BudgetLoops().visit(tree)
        return super().compile(rewritten, name, filename, raw, defer_init)  # type: ignore[call-overload]  # raw is a plain bool here

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            if _lookups is not None:
                _lookups.note(obj, attribute, obj[attribute])
            return obj[attribute]
        value = super().getattr(obj, attribute)
        if _lookups is not None:
            _lookups.note(obj, attribute, value)
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        if _lookups is not None and isinstance(argument, str):
            _lookups.note(obj, argument, value)
        return value

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _charge(weight=_CALL)
        _data_only(args)
        _data_only(kwargs.values())
        checked = _check_str_method(obj, args, kwargs)
        result = super().call(context, obj, *checked, **kwargs)
        if _too_big(result):
            raise SecurityError(f"the result of {getattr(obj, '__name__', 'a call')} is too large")
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _size_of_power(left, right) > MAX_INT_BITS:
            raise SecurityError(f"{left!r} ** {right!r} is too large")
        if operator == "*" and _size_of_product(left, right) > MAX_STRING:
            raise SecurityError("the product of `*` is too large")
        _data_only((left, right))
        if operator == "%" and isinstance(left, str):
            _check_width(left, *(right if isinstance(right, tuple) else (right,)))
            _data_only(
                right
                if isinstance(right, tuple)
                else right.values()
                if isinstance(right, dict)
                else ()
            )
        result = super().call_binop(context, operator, left, right)
        if _too_big(result):
            raise SecurityError(f"the result of `{operator}` is too large")
        return result


def _check_patterns(tree: nodes.Template, name: str | None, filename: str | None) -> None:
    """A regex filter's pattern written in the template is compiled now: one that RE2 cannot
    run (a backreference, a lookaround) fails when the config loads, naming the key."""
    for node in tree.find_all(nodes.Filter):
        if node.name not in REGEX_FILTERS or not node.args:
            continue
        pattern = node.args[0]
        if isinstance(pattern, nodes.Const) and isinstance(pattern.value, str):
            try:
                compile_regex(pattern.value, node.name)
            except RegexError as exc:
                raise jinja2.TemplateSyntaxError(
                    f"{node.name}({pattern.value!r}): {exc.message}", node.lineno, name, filename
                ) from None


def _refuse_non_data(value: Any) -> Any:
    # `{{ 'a'|attr('format') }}` would otherwise print a function's repr; a template makes data.
    if callable(value) and not isinstance(value, jinja2.Undefined):
        raise SecurityError(f"a template may output data, not {type(value).__name__}")
    if isinstance(value, str):
        _charge(characters=len(value))
    return value


def _json_value(value: Any) -> str:
    # For JSON text bodies: `{"name": {{ event.subject }}}` writes "amit@gmetri.com" with its
    # quotes and escapes, so the body is valid JSON whatever the event's strings hold.
    if isinstance(value, jinja2.Undefined):
        str(value)  # raises UndefinedError with Jinja's message
    _refuse_non_data(value)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SecurityError(f"cannot write {type(value).__name__} as JSON: {exc}") from exc
    _charge(characters=len(text))
    return text


class LookupLog:
    """What `relayhook check` learns from rendering a connector's examples: for each template
    (by key path) and each name looked up in it (`lable` in `choice.lable`), whether a lookup of
    that name ever found something, and the keys of the objects it was missing from.

    Recorded only inside `recording_lookups()`, which the CLI alone uses (one thread)."""

    def __init__(self) -> None:
        self.current = ""
        self.rendered: set[str] = set()  # the templates rendered at all, by key path
        self.found: set[tuple[str, str]] = set()
        self.missing: dict[tuple[str, str], set[str]] = {}

    def note(self, obj: Any, name: str, value: Any) -> None:
        key = (self.current, name)
        if not isinstance(value, jinja2.Undefined):
            self.found.add(key)
            return
        keys = self.missing.setdefault(key, set())
        if isinstance(obj, dict):
            keys.update(str(k) for k in itertools.islice(obj, 100))

    def never_found(self) -> dict[tuple[str, str], set[str]]:
        """(template, name) -> keys of the objects it was missing from, for the names that
        were looked up and never found."""
        return {key: keys for key, keys in self.missing.items() if key not in self.found}


_lookups: LookupLog | None = None  # a module global: one check is cheaper than a ContextVar


@contextlib.contextmanager
def recording_lookups() -> Iterator[LookupLog]:
    """Record every name looked up by the templates rendered inside the block (not
    thread-safe: for the CLI's `check`, never for the server)."""
    global _lookups
    previous, _lookups = _lookups, LookupLog()
    try:
        yield _lookups
    finally:
        _lookups = previous


def make_environment(finalize: Any = _refuse_non_data) -> SandboxEnvironment:
    env = SandboxEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=finalize)
    env.globals["range"] = _budgeted_range
    env.globals["_budgeted_loop"] = _budgeted_loop
    env.globals["_checked_concat"] = _checked_concat
    env.globals.pop("lipsum", None)  # unbounded text generator, of no use here
    env.globals.pop("namespace", None)  # mutable state across loop iterations: exponential growth
    env.globals.pop("cycler", None)  # state across iterations, and a class name in `'%s' % ...`
    env.globals.pop("joiner", None)
    _bounded_filters(env.filters)
    env.filters["epoch_ms"] = epoch_ms
    env.filters["epoch_s"] = epoch_s
    env.filters["dotted"] = dotted
    env.filters["flatten"] = flatten
    env.filters["path_segment"] = path_segment
    env.filters["regex_search"] = regex_search
    env.filters["unfilled_placeholders"] = unfilled_placeholders
    return env


ENV = make_environment()
JSON_ENV = make_environment(finalize=_json_value)

_SINGLE_EXPRESSION = re.compile(r"\A\s*\{\{-?(?P<expr>.*?)-?\}\}\s*\Z", re.S)


def _single_expression(source: str) -> str | None:
    match = _SINGLE_EXPRESSION.match(source)
    if match is None:
        return None
    expr = match.group("expr")
    if "{{" in expr or "}}" in expr or "{%" in source or "{#" in source:
        return None
    return expr.strip()


def is_single_expression(source: str) -> bool:
    """Whether `source` is one `{{ expression }}` (and so renders to its native value)."""
    return _single_expression(source) is not None


@dataclass(frozen=True, slots=True)
class Template:
    """One compiled template string."""

    name: str
    source: str
    _render: Any  # a callable(context) -> value

    def render(self, context: Mapping[str, Any]) -> Any:
        token = _budget.set(_Budget(_deadline.get()))
        log, outer = _lookups, ""
        if log is not None:
            outer, log.current = log.current, self.name
            log.rendered.add(self.name)
        try:
            return self._render(context)
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise RenderError(self.name, _describe(exc)) from exc
        except RegexError as exc:  # a pattern made at render time
            raise RenderError(self.name, str(exc)) from exc
        except RecursionError as exc:
            raise RenderError(self.name, "recursion too deep") from exc
        finally:
            _budget.reset(token)
            if log is not None:
                log.current = outer

    @property
    def is_constant(self) -> bool:
        return "{{" not in self.source and "{%" not in self.source


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {text}"
    return text


def _compile_error(name: str, exc: jinja2.TemplateSyntaxError) -> TemplateError:
    return TemplateError(name, exc.message or str(exc), exc.lineno or 1)


def _compile_expression(expr: str) -> Any:
    compiled = ENV.compile_expression(expr, undefined_to_none=False)

    def evaluate(context: Mapping[str, Any]) -> Any:
        value = compiled(**context)
        if isinstance(value, jinja2.Undefined):
            str(value)  # raises UndefinedError with Jinja's own message
        return _refuse_non_data(value)

    parser = Parser(ENV, expr, state="variable")  # as compile_expression parses it
    return _with_shortcut(
        shortcut_expression(parser.parse_expression(), ENV, _refuse_non_data), evaluate
    )


def _with_shortcut(shortcut: Any, jinja_render: Any) -> Any:
    """Render through the shortcut (shortcuts.py) when the template has one and the input stays
    on its happy path; through Jinja otherwise, and always while `check` records lookups."""
    if shortcut is None:
        return jinja_render

    def render(context: Mapping[str, Any]) -> Any:
        if _lookups is None:
            try:
                return shortcut(context)
            except Miss:
                pass
        return jinja_render(context)

    return render


def compile_template(source: str, name: str) -> Template:
    """Compile one template string. Raises TemplateError naming `name` and the line."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return Template(name, source, lambda _context: source)
    expr = _single_expression(source)
    try:
        if expr is not None:
            try:
                return Template(name, source, _compile_expression(expr))
            except jinja2.TemplateSyntaxError:
                ENV.parse(source)  # the same error, with the line counted in the whole source
                raise
        template = ENV.from_string(source)
        shortcut = shortcut_text(ENV.parse(source), ENV, _refuse_non_data)
    except jinja2.TemplateSyntaxError as exc:
        raise _compile_error(name, exc) from exc
    render = _with_shortcut(shortcut, lambda context: template.render(context))
    return Template(name, source, render)


def compile_json_text(source: str, name: str) -> Template:
    """A template of JSON text whose every `{{ expression }}` writes a JSON value."""
    try:
        template = JSON_ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _compile_error(name, exc) from exc
    return Template(name, source, lambda context: template.render(context))


def referenced_names(source: str) -> set[str]:
    """The top-level variable names a template reads (`row` in `{{ row.id }}`)."""
    from jinja2 import meta

    try:
        return set(meta.find_undeclared_variables(ENV.parse(source)))
    except jinja2.TemplateSyntaxError:
        return set()
