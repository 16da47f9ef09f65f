"""Templates simple enough to evaluate without Jinja, with Jinja's results.

Most templates in connectors and hooks are a path (`{{ body }}`, `{{ event.data }}`,
`{{ headers['webhook-id'] | default('') }}`), a comparison (`{{ item.action == 'create' }}`) or
text around paths (`generic/{{ relay }}`). Jinja renders each through a fresh `Context` (a dict
of the globals and variables, a ChainMap): 10-20 us a template, five to seven per event, a third
of a small request's CPU. `shortcut_expression` and `shortcut_text` turn such a parsed template
into a plain closure when the config loads.

A shortcut covers a small subset of the language (names, `.attr`, `[constant]`, literals,
filters and tests that need no context, `not`/`and`/`or`, comparisons, `a if b else c`) and
only its happy path. Wherever an input leads elsewhere (a name or key that is not there, an
attribute of something that is not a dict, a value of a kind the subset does not handle, any
exception), the closure raises `Miss` and the caller renders through Jinja, which gives its
usual value or error. So results and errors are Jinja's by construction;
tests/test_shortcuts.py compares both on a table of templates and inputs.

Pure: no I/O. The environment's filters, tests, globals and finalize are passed in.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import Undefined, nodes
from jinja2.sandbox import SandboxedEnvironment

Evaluate = Callable[[Mapping[str, Any]], Any]


class Miss(Exception):  # noqa: N818  # not an error: "render this one through Jinja"
    """The input leaves the shortcut's happy path: render through Jinja instead."""


class _Unsupported(Exception):  # noqa: N818  # compile time: this template gets no shortcut
    pass


# Names Jinja gives a meaning of its own whatever the variables say (`self` is the template).
_SPECIAL_NAMES = frozenset({"self", "loop", "caller", "varargs", "kwargs", "super"})
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}
_MAY_TAKE_UNDEFINED = frozenset({"default", "d", "defined", "undefined"})


def shortcut_expression(
    expr: nodes.Expr, env: SandboxedEnvironment, finalize: Callable[[Any], Any]
) -> Evaluate | None:
    """A closure giving what Jinja's `compile_expression` followed by `finalize` gives, or
    raising Miss; None when the expression is outside the subset."""
    try:
        evaluate = _compile(expr, env)
    except _Unsupported:
        return None

    def run(context: Mapping[str, Any]) -> Any:
        try:
            value = evaluate(context)
        except Miss:
            raise
        except Exception as exc:  # Jinja gives the error, with its own message
            raise Miss from exc
        if isinstance(value, Undefined):
            raise Miss
        return finalize(value)

    return run


def shortcut_text(
    tree: nodes.Template, env: SandboxedEnvironment, finalize: Callable[[Any], Any]
) -> Evaluate | None:
    """A closure giving what rendering the template to text gives (text around paths whose
    values are text), or raising Miss; None when the template is outside the subset."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts: list[str | Evaluate] = []
    try:
        for child in tree.body[0].nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(child.data)
            elif child.find(nodes.Name) is None and not isinstance(child, nodes.Name):
                return None  # Jinja folds constant parts when it compiles: not at render time
            else:
                parts.append(_compile(child, env))
    except _Unsupported:
        return None

    def run(context: Mapping[str, Any]) -> str:
        texts = []
        for part in parts:
            if isinstance(part, str):
                texts.append(part)
                continue
            try:
                value = part(context)
            except Exception as exc:
                raise Miss from exc
            if type(value) is not str:  # Jinja's str() of anything else: leave it to Jinja
                raise Miss
            texts.append(value)
        for part, text in zip(parts, texts, strict=True):
            if not isinstance(part, str):
                finalize(text)  # charges the render's output budget, as Jinja's finalize does
        return "".join(texts)

    return run


def _compile(node: nodes.Node, env: SandboxedEnvironment) -> Evaluate:
    compile_node = _COMPILERS.get(type(node))
    if compile_node is None:
        raise _Unsupported(type(node).__name__)
    return compile_node(node, env)


def _name(node: nodes.Name, env: SandboxedEnvironment) -> Evaluate:
    name = node.name
    if node.ctx != "load" or name in _SPECIAL_NAMES:
        raise _Unsupported(name)
    is_global = name in env.globals
    undefined = env.undefined(name=name)

    def evaluate(context: Mapping[str, Any]) -> Any:
        value = context.get(name, _ABSENT)
        if value is _ABSENT:
            if is_global:
                raise Miss
            return undefined
        return value

    return evaluate


def _absent_key(container: Any, key: Any) -> Any:
    """Jinja's value for a key a dict lacks: undefined, unless the key names a dict attribute."""
    if isinstance(key, str) and hasattr(container, key):
        raise Miss
    return _UNDEFINED


def _getattr(node: nodes.Getattr, env: SandboxedEnvironment) -> Evaluate:
    inner, attribute = _compile(node.node, env), node.attr
    if node.ctx != "load":
        raise _Unsupported("store")

    def evaluate(context: Mapping[str, Any]) -> Any:
        obj = inner(context)
        if type(obj) is not dict:
            raise Miss
        if attribute in obj:
            return obj[attribute]
        return _absent_key(obj, attribute)

    return evaluate


def _getitem(node: nodes.Getitem, env: SandboxedEnvironment) -> Evaluate:
    if node.ctx != "load" or not isinstance(node.arg, nodes.Const):
        raise _Unsupported("getitem")
    inner, key = _compile(node.node, env), node.arg.value
    if not isinstance(key, str) and type(key) is not int:
        raise _Unsupported("key")

    def evaluate(context: Mapping[str, Any]) -> Any:
        obj = inner(context)
        if type(obj) is dict:
            if key in obj:
                return obj[key]
            return _absent_key(obj, key)
        if type(obj) is list and type(key) is int:
            return obj[key] if -len(obj) <= key < len(obj) else _UNDEFINED
        raise Miss

    return evaluate


def _const(node: nodes.Const, env: SandboxedEnvironment) -> Evaluate:
    value = node.value
    return lambda _context: value


def _literal(node: nodes.List | nodes.Tuple, env: SandboxedEnvironment) -> Evaluate:
    if isinstance(node, nodes.Tuple) and node.ctx != "load":
        raise _Unsupported("store")
    items = [_compile(item, env) for item in node.items]
    if isinstance(node, nodes.Tuple):
        return lambda context: tuple(_defined(item(context)) for item in items)
    return lambda context: [_defined(item(context)) for item in items]


def _dict(node: nodes.Dict, env: SandboxedEnvironment) -> Evaluate:
    pairs = [(_compile(pair.key, env), _compile(pair.value, env)) for pair in node.items]
    return lambda context: {
        _defined(key(context)): _defined(value(context)) for key, value in pairs
    }


def _call_shape(node: nodes.Filter | nodes.Test) -> None:
    if node.kwargs or node.dyn_args is not None or node.dyn_kwargs is not None:
        raise _Unsupported("keyword arguments")


def _filter(node: nodes.Filter, env: SandboxedEnvironment) -> Evaluate:
    return _applied(node, env, env.filters)


def _test(node: nodes.Test, env: SandboxedEnvironment) -> Evaluate:
    return _applied(node, env, env.tests)


def _applied(
    node: nodes.Filter | nodes.Test, env: SandboxedEnvironment, functions: Mapping[str, Any]
) -> Evaluate:
    """A filter or test called as Jinja's generated code calls it: directly, not sandboxed."""
    _call_shape(node)
    function = functions.get(node.name)
    if node.node is None or function is None or hasattr(function, "jinja_pass_arg"):
        raise _Unsupported(node.name)  # unknown (Jinja's compile error), or wants the context
    inner = _compile(node.node, env)
    args = [_compile(arg, env) for arg in node.args]
    takes_undefined = node.name in _MAY_TAKE_UNDEFINED

    def evaluate(context: Mapping[str, Any]) -> Any:
        values = [inner(context), *(arg(context) for arg in args)]
        if not takes_undefined and any(isinstance(value, Undefined) for value in values):
            raise Miss
        return function(*values)

    return evaluate


def _not(node: nodes.Not, env: SandboxedEnvironment) -> Evaluate:
    inner = _compile(node.node, env)
    return lambda context: not _defined(inner(context))


def _and(node: nodes.And, env: SandboxedEnvironment) -> Evaluate:
    left, right = _compile(node.left, env), _compile(node.right, env)
    return lambda context: _defined(left(context)) and right(context)


def _or(node: nodes.Or, env: SandboxedEnvironment) -> Evaluate:
    left, right = _compile(node.left, env), _compile(node.right, env)
    return lambda context: _defined(left(context)) or right(context)


def _compare(node: nodes.Compare, env: SandboxedEnvironment) -> Evaluate:
    first = _compile(node.expr, env)
    steps = []
    for operand in node.ops:
        if operand.op not in _COMPARE:
            raise _Unsupported(operand.op)
        steps.append((_COMPARE[operand.op], _compile(operand.expr, env)))

    def evaluate(context: Mapping[str, Any]) -> Any:
        # Python's chained comparison, as Jinja generates it: `a < b < c` is a < b and b < c.
        left = _defined(first(context))
        result: Any = True
        for compare, right_of in steps:
            right = _defined(right_of(context))
            result = compare(left, right)
            if not result:
                return result
            left = right
        return result

    return evaluate


def _condition(node: nodes.CondExpr, env: SandboxedEnvironment) -> Evaluate:
    if node.expr2 is None:
        raise _Unsupported("if without else")
    test, yes, no = (_compile(part, env) for part in (node.test, node.expr1, node.expr2))
    return lambda context: yes(context) if _defined(test(context)) else no(context)


def _defined(value: Any) -> Any:
    if isinstance(value, Undefined):
        raise Miss
    return value


_ABSENT = object()
_UNDEFINED = Undefined()  # for `default` only; any other use of it is a Miss
_COMPILERS: dict[type[nodes.Node], Callable[[Any, SandboxedEnvironment], Evaluate]] = {
    nodes.Name: _name,
    nodes.Getattr: _getattr,
    nodes.Getitem: _getitem,
    nodes.Const: _const,
    nodes.List: _literal,
    nodes.Tuple: _literal,
    nodes.Dict: _dict,
    nodes.Filter: _filter,
    nodes.Test: _test,
    nodes.Not: _not,
    nodes.And: _and,
    nodes.Or: _or,
    nodes.Compare: _compare,
    nodes.CondExpr: _condition,
}
