"""Values whose strings are templates: a string, or a TOML table/array of them, nested.

    data = { form = "{{ body.form }}", id = "{{ sub.id }}" }

A table with exactly the keys `each`, `key` and `value` (and optionally `when`) is not data but
the one construct that builds an object from a list, one entry per item:

    answers = { each = "answer in body.answers", key = "{{ answer.field.ref }}",
                value = "{{ answer[answer.type] }}" }

`each` is a loop (`name in expression`, or `a, b in expression` for pairs), `key` must give a
text (or a number), `value` is itself a value (a template keeps its native type, a table nests),
`when` skips the items where it is false. Later items win a repeated key.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any

from relayhook.core.templating import (
    RenderError,
    Template,
    TemplateError,
    compile_template,
    is_single_expression,
    referenced_names,
)

MAX_ITEMS = 50_000  # items one `each` may turn into entries
EACH_KEYS = frozenset({"each", "key", "value"})

_LOOP = re.compile(
    r"^\s*(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+in\s+(?P<expr>.+)$", re.S
)


@dataclass(frozen=True, slots=True)
class Loop:
    """`name in expression` (or `a, b in expression`), compiled."""

    names: tuple[str, ...]
    iterable: Template

    def items(self, context: Mapping[str, Any]) -> Any:
        """The list the loop walks (bounded), or RenderError when the expression gives none."""
        return iterable_of(self.iterable.render(context), self.iterable.name)

    def bind(self, item: Any) -> dict[str, Any]:
        """The loop variables for one item."""
        if len(self.names) == 1:
            return {self.names[0]: item}
        if not isinstance(item, list | tuple) or len(item) != len(self.names):
            raise RenderError(
                self.iterable.name, f"cannot unpack {describe(item)} into {', '.join(self.names)}"
            )
        return dict(zip(self.names, item, strict=True))


def parse_loop(source: str, name: str) -> Loop:
    """Compile `name in expression`; TemplateError naming `name` when it is not one."""
    match = _LOOP.match(source)
    if match is None:
        raise TemplateError(name, f"expected `name in expression`, got {source!r}")
    names = tuple(part.strip() for part in match.group("names").split(","))
    return Loop(names, compile_template("{{ " + match.group("expr").strip() + " }}", name))


def iterable_of(value: Any, name: str) -> Any:
    if isinstance(value, list | tuple | ItemsView | KeysView | ValuesView):
        return value
    if isinstance(value, Iterator):  # `| items`, `| map(...)`: bounded, then a list
        items = list(itertools.islice(value, MAX_ITEMS + 1))
        if len(items) > MAX_ITEMS:
            raise RenderError(name, f"more than {MAX_ITEMS} items to loop over")
        return items
    raise RenderError(name, f"expected a list to loop over, got {describe(value)}")


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class _Each:
    """The list-to-object construct, compiled."""

    name: str
    loop: Loop
    key: Template
    value: Any  # a compiled tree
    when: Template | None

    def render(self, context: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in self.loop.items(context):
            inner = {**context, **self.loop.bind(item)}
            if self.when is not None and not self.when.render(inner):
                continue
            key = _entry_key(self.key.render(inner), self.key.name)  # the key first: its
            out[key] = _render_tree(self.value, inner)  # error names what it looked up
        return out


def _entry_key(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        raise RenderError(
            name, f"a key must be a non-empty text or a number, got {describe(value)}"
        )
    return str(value)


def is_each(node: Any) -> bool:
    """Whether a TOML table is the list-to-object construct (not data)."""
    return isinstance(node, dict) and (
        node.keys() == EACH_KEYS or node.keys() == EACH_KEYS | {"when"}
    )


@dataclass(frozen=True, slots=True)
class CompiledValue:
    """A value whose strings are templates: a string, or a table/array of them, nested."""

    name: str
    _tree: Any

    def render(self, context: Mapping[str, Any]) -> Any:
        return _render_tree(self._tree, context)


def _render_tree(node: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(node, Template | _Each):
        return node.render(context)
    if isinstance(node, dict):
        return {key: _render_tree(value, context) for key, value in node.items()}
    if isinstance(node, list):
        return [_render_tree(value, context) for value in node]
    return node


def _compile_each(node: dict[str, Any], name: str) -> _Each:
    if not isinstance(node["each"], str):
        raise TemplateError(f"{name}.each", "expected `name in expression`")
    if not isinstance(node["key"], str):
        raise TemplateError(f"{name}.key", "a key is a template, e.g. {{ item.name }}")
    when = node.get("when")
    if when is not None and not (isinstance(when, str) and is_single_expression(when)):
        raise TemplateError(f"{name}.when", "a condition is one {{ expression }}")
    return _Each(
        name,
        parse_loop(node["each"], f"{name}.each"),
        compile_template(node["key"], f"{name}.key"),
        _compile_tree(node["value"], f"{name}.value"),
        compile_template(when, f"{name}.when") if when is not None else None,
    )


def _compile_tree(node: Any, name: str) -> Any:
    if isinstance(node, str):
        return compile_template(node, name)
    if is_each(node):
        return _compile_each(node, name)
    if (
        isinstance(node, dict)
        and isinstance(node.get("each"), str)
        and _LOOP.match(node["each"])
        and not EACH_KEYS <= node.keys()
    ):
        _refuse_each_keys(node, name)
    if isinstance(node, dict):
        return {key: _compile_tree(value, f"{name}.{key}") for key, value in node.items()}
    if isinstance(node, list):
        return [_compile_tree(value, f"{name}[{i}]") for i, value in enumerate(node)]
    return node


def _refuse_each_keys(node: dict[str, Any], name: str) -> None:
    """A table with `each = "x in ..."` that lacks `key` or `value`: a typo (`keys =`), said at
    that key rather than as `'x' is undefined` when it runs. (A table with all three and more
    is data.)"""
    import difflib

    allowed = EACH_KEYS | {"when"}
    for key in node:
        if key not in allowed:
            near = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.5)
            hint = f"; did you mean `{near[0]}`?" if near else ""
            raise TemplateError(
                f"{name}.{key}",
                f"a table with `each` takes `each`, `key`, "
                f"`value` and optionally `when`, not `{key}`{hint}",
            )
    missing = sorted(EACH_KEYS - node.keys())
    raise TemplateError(f"{name}.each", f"a table with `each` needs `{'` and `'.join(missing)}`")


def compile_value(value: Any, name: str) -> CompiledValue:
    """Compile a string, or a TOML table/array whose strings are templates."""
    return CompiledValue(name, _compile_tree(value, name))


def value_names(value: Any) -> set[str]:
    """The variable names a (raw, uncompiled) value reads from its scope: an `each` reads its
    expression's names, and those of its key, value and condition but for its own variables."""
    if isinstance(value, str):
        return referenced_names(value)
    if is_each(value):
        match = _LOOP.match(str(value["each"]))
        if match is None:
            return set()
        own = {part.strip() for part in match.group("names").split(",")}
        inner = value_names([value["key"], value["value"], value.get("when") or ""])
        return referenced_names("{{ " + match.group("expr") + " }}") | (inner - own)
    if isinstance(value, dict):
        return set().union(*(value_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(value_names(v) for v in value))
    return set()
