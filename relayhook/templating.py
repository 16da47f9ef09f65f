"""The one template language: Jinja, sandboxed, compiled once when config loads.

A template that is a single `{{ expression }}` keeps the expression's native type (a dict stays a
dict, 75 stays 75); anything else renders to a string; a string with no `{{` or `{%` is a constant.

    >>> compile_value("{{ row.score }}", "data.score").render({"row": {"score": 75}})
    75
    >>> compile_value("user {{ id }}", "subject").render({"id": 7})
    'user 7'

The sandbox is immutable (no `.append`, no `.update`), strict about undefined names, has no loader
(no `include`/`import`), and bounds what a hostile template can make the process do: `range` and
loops share an iteration budget per render, and `*`, `**` and `+` refuse results past a size.
"""

from __future__ import annotations

import contextvars
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from relayhook.events import format_time

MAX_STRING = 1 << 20  # characters (or items) a `*` or `+` may produce
MAX_INT_BITS = 4096  # size of an integer a `**` or `*` may produce
MAX_ITERATIONS = 100_000  # `range` items per render, all loops together

_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_budget")


class TemplateError(Exception):
    """A template does not compile. `name` is the key it came from, `line` its line in it."""

    def __init__(self, name: str, message: str, line: int = 1) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.line = line


class RenderError(Exception):
    """A template failed on this input: an undefined name, a type error, a sandbox refusal."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def _budgeted_range(*args: int) -> Iterator[int]:
    items = range(*args)
    budget = _budget.get(None)
    if budget is None or len(items) > budget[0]:
        raise SecurityError(f"range() of {len(items)} items exceeds the budget of this render")
    budget[0] -= len(items)
    return iter(items)


def _too_big(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value.bit_length() > MAX_INT_BITS
    if isinstance(value, str | list | tuple):
        return len(value) > MAX_STRING
    return False


def _size_of_power(left: Any, right: Any) -> float:
    if not isinstance(left, int | float) or not isinstance(right, int | float):
        return 0.0
    if abs(left) <= 1 or right <= 0:
        return 0.0
    return math.log2(abs(left)) * right


def _size_of_product(left: Any, right: Any) -> int:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            return len(seq) * times
    return 0


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with size limits on the operators that can blow up."""

    intercepted_binops = frozenset(["*", "**", "+"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _size_of_power(left, right) > MAX_INT_BITS:
            raise SecurityError(f"{left!r} ** {right!r} is too large")
        if operator == "*" and _size_of_product(left, right) > MAX_STRING:
            raise SecurityError("the product of `*` is too large")
        result = super().call_binop(context, operator, left, right)
        if _too_big(result):
            raise SecurityError(f"the result of `{operator}` is too large")
        return result


def epoch_ms(value: Any) -> str:
    """Filter: epoch milliseconds -> RFC 3339 (`{{ rule.timestamp | epoch_ms }}`)."""
    return format_time(datetime.fromtimestamp(float(value) / 1000, UTC))


def epoch_s(value: Any) -> str:
    """Filter: epoch seconds -> RFC 3339."""
    return format_time(datetime.fromtimestamp(float(value), UTC))


def dotted(value: Any) -> str:
    """Filter: an event name as type segments: `Level Completed`, `levelCompleted` and
    `level_completed` all give `level.completed`."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1.\2", str(value))
    return ".".join(part for part in re.split(r"[^A-Za-z0-9]+", text.lower()) if part)


def _refuse_non_data(value: Any) -> Any:
    # `{{ 'a'|attr('format') }}` would otherwise print a function's repr; a template makes data.
    if callable(value) and not isinstance(value, jinja2.Undefined):
        raise SecurityError(f"a template may output data, not {type(value).__name__}")
    return value


def make_environment() -> SandboxEnvironment:
    env = SandboxEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, finalize=_refuse_non_data
    )
    env.globals["range"] = _budgeted_range
    env.globals.pop("lipsum", None)  # unbounded text generator, of no use here
    env.filters["epoch_ms"] = epoch_ms
    env.filters["epoch_s"] = epoch_s
    env.filters["dotted"] = dotted
    return env


ENV = make_environment()

_SINGLE_EXPRESSION = re.compile(r"\A\s*\{\{-?(?P<expr>.*?)-?\}\}\s*\Z", re.S)


def _single_expression(source: str) -> str | None:
    match = _SINGLE_EXPRESSION.match(source)
    if match is None:
        return None
    expr = match.group("expr")
    if "{{" in expr or "}}" in expr or "{%" in source or "{#" in source:
        return None
    return expr.strip()


@dataclass(frozen=True, slots=True)
class Template:
    """One compiled template string."""

    name: str
    source: str
    _render: Any  # a callable(context) -> value

    def render(self, context: Mapping[str, Any]) -> Any:
        token = _budget.set([MAX_ITERATIONS])
        try:
            return self._render(context)
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise RenderError(self.name, _describe(exc)) from exc
        except RecursionError as exc:
            raise RenderError(self.name, "recursion too deep") from exc
        finally:
            _budget.reset(token)

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


_DOTTED_PATH = re.compile(r"\A[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\Z")
_DICT_ATTRIBUTES = frozenset(dir(dict))


def _compile_expression(expr: str) -> Any:
    compiled = ENV.compile_expression(expr, undefined_to_none=False)

    def evaluate(context: Mapping[str, Any]) -> Any:
        value = compiled(**context)
        if isinstance(value, jinja2.Undefined):
            str(value)  # raises UndefinedError with Jinja's own message
        return _refuse_non_data(value)

    if _DOTTED_PATH.match(expr) is None:
        return evaluate
    head, *steps = expr.split(".")
    if any(step in _DICT_ATTRIBUTES for step in steps):
        return evaluate  # `body.items` is dict.items in Jinja; keep its meaning

    def lookup(context: Mapping[str, Any]) -> Any:
        # The hot path of mapping a 500-row batch: `row.identifier` without Jinja's machinery.
        value = context.get(head, _MISSING)
        for step in steps:
            if not isinstance(value, dict) or step not in value:
                return evaluate(context)  # let Jinja produce its usual value or error
            value = value[step]
        return evaluate(context) if value is _MISSING else value

    return lookup


_MISSING = object()


def compile_template(source: str, name: str) -> Template:
    """Compile one template string. Raises TemplateError naming `name` and the line."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return Template(name, source, lambda _context: source)
    expr = _single_expression(source)
    try:
        if expr is not None:
            return Template(name, source, _compile_expression(expr))
        template = ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _compile_error(name, exc) from exc
    return Template(name, source, lambda context: template.render(context))


@dataclass(frozen=True, slots=True)
class CompiledValue:
    """A value whose strings are templates: a string, or a table/array of them, nested."""

    name: str
    _tree: Any

    def render(self, context: Mapping[str, Any]) -> Any:
        return _render_tree(self._tree, context)


def _render_tree(node: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(node, Template):
        return node.render(context)
    if isinstance(node, dict):
        return {key: _render_tree(value, context) for key, value in node.items()}
    if isinstance(node, list):
        return [_render_tree(value, context) for value in node]
    return node


def _compile_tree(node: Any, name: str) -> Any:
    if isinstance(node, str):
        return compile_template(node, name)
    if isinstance(node, dict):
        return {key: _compile_tree(value, f"{name}.{key}") for key, value in node.items()}
    if isinstance(node, list):
        return [_compile_tree(value, f"{name}[{i}]") for i, value in enumerate(node)]
    return node


def compile_value(value: Any, name: str) -> CompiledValue:
    """Compile a string, or a TOML table/array whose strings are templates."""
    return CompiledValue(name, _compile_tree(value, name))


def referenced_names(source: str) -> set[str]:
    """The top-level variable names a template reads (`row` in `{{ row.id }}`)."""
    from jinja2 import meta

    try:
        return set(meta.find_undeclared_variables(ENV.parse(source)))
    except jinja2.TemplateSyntaxError:
        return set()
