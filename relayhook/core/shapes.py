"""A payload that changed shape: per relay and event type, the fields seen (their paths, JSON
types and how often each is present), learned one payload at a time, and the changes a new
payload brings once the shape is learned: a new field, a field that was always there and is
missing, a field of a new type.

Paths are dotted, an array's items under `[]`: `data.rows[].identifier`. Only the first
ITEMS items of an array are looked at (a GMetri batch of 500 rows has one shape), so the cost
of a payload is bounded by its shape, not its size.

>>> shape = Shape()
>>> for n in range(LEARN):
...     _ = observe(shape, paths_of({"data": {"score": 75}}), f"req_{n}")
>>> [c.text() for c in observe(shape, paths_of({"data": {"score": "75"}}), "req_x")]
['`data.score` is now a text in 1 of the last 20 payloads (was a number)']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ITEMS = 3  # the items of an array looked at
DEPTH = 16  # deeper fields are not followed
LEARN = 20  # payloads seen before changes are reported
RECENT = 20  # payloads remembered for "12 of the last 20"
ChangeKind = Literal["added", "missing", "retyped"]
WORDS = {
    "string": "a text",
    "number": "a number",
    "boolean": "true/false",
    "null": "empty",
    "object": "an object",
    "array": "a list",
}


_TYPES = {
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
    list: "array",
    dict: "object",
}


def json_type(value: object) -> str:
    kind = _TYPES.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "array" if isinstance(value, list | tuple) else "object"


def paths_of(
    value: object, prefix: str = "", found: dict[str, str] | None = None
) -> dict[str, str]:
    """Every field path of a JSON value with its type (added to `found`, if given); of an
    array, its first ITEMS items. A path seen as null and as something else keeps the
    something else."""
    found = {} if found is None else found
    stack: list[tuple[object, str, int]] = [(value, prefix, 0)]
    while stack:  # bounded: each node of the (sampled) value once
        node, path, depth = stack.pop()
        if depth > DEPTH:
            continue
        if isinstance(node, dict):
            items: Iterable[tuple[str, object]] = (
                ((f"{path}.{key}" if path else str(key)), item) for key, item in node.items()
            )
        elif isinstance(node, list | tuple):
            items = ((f"{path}[]", item) for item in node[:ITEMS])
        else:
            continue
        for child, item in items:
            kind = _TYPES.get(type(item)) or json_type(item)
            if found.get(child, "null") == "null":
                found[child] = kind
            if kind == "object" or kind == "array":
                stack.append((item, child, depth + 1))
    return found


@dataclass
class FieldSeen:
    """How many payloads had the field, per type, and the first request that had each type."""

    types: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    @property
    def seen(self) -> int:
        return sum(self.types.values())

    def main_type(self) -> str:
        real = {t: n for t, n in self.types.items() if t != "null"} or self.types
        return max(real, key=lambda t: real[t])


@dataclass
class Shape:
    payloads: int = 0
    fields: dict[str, FieldSeen] = field(default_factory=dict)
    recent: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "payloads": self.payloads,
            "recent": self.recent,
            "fields": {
                p: {"types": f.types, "first": f.first} for p, f in sorted(self.fields.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shape:
        fields = {
            p: FieldSeen(dict(f["types"]), dict(f["first"]))
            for p, f in data.get("fields", {}).items()
        }
        return cls(int(data.get("payloads", 0)), fields, list(data.get("recent", [])))

    def field_list(self) -> list[dict[str, Any]]:
        """The fields as the relay page (and a field picker) shows them: path, main type, and
        how often present (0-1)."""
        return [
            {
                "path": path,
                "type": f.main_type(),
                "types": sorted(f.types),
                "present": round(f.seen / self.payloads, 3) if self.payloads else 0.0,
            }
            for path, f in sorted(self.fields.items())
        ]


@dataclass(frozen=True, slots=True)
class Change:
    """`path` was added, went missing or changed type (`was` → `type`) with `request`;
    `recent`: in how many of the last `window` payloads."""

    kind: ChangeKind
    path: str
    type: str | None
    was: str | None
    request: str
    recent: int = 1
    window: int = 1

    @property
    def signature(self) -> str:
        return f"shape: {self.path} {self.kind}"

    def text(self) -> str:
        share = f"in {self.recent} of the last {self.window} payloads"
        if self.kind == "added":
            return f"`{self.path}` is new: {WORDS.get(self.type or '', self.type)} {share}"
        if self.kind == "missing":
            return f"`{self.path}`, always there before, is missing {share}"
        return (
            f"`{self.path}` is now {WORDS.get(self.type or '', self.type)} {share} "
            f"(was {WORDS.get(self.was or '', self.was)})"
        )


def observe(shape: Shape, paths: Mapping[str, str], request: str) -> list[Change]:
    """Learn one payload's `paths` (paths_of) into `shape`; the changes it brings, once the
    shape has learned LEARN payloads."""
    learned = shape.payloads >= LEARN
    changes: list[Change] = []
    if learned and shape.recent and shape.recent[-1] == paths:
        pass  # the same shape as the last payload's: it was checked, nothing can be new
    elif learned:
        for path, kind in paths.items():
            known = shape.fields.get(path)
            if known is None:
                changes.append(Change("added", path, kind, None, request))
            elif kind != "null" and kind not in known.types:
                changes.append(Change("retyped", path, kind, known.main_type(), request))
        for path, known in shape.fields.items():
            if known.seen == shape.payloads and path not in paths and _parent_there(path, paths):
                changes.append(Change("missing", path, None, known.main_type(), request))
    shape.payloads += 1
    for path, kind in paths.items():
        known = shape.fields.setdefault(path, FieldSeen())
        known.types[kind] = known.types.get(kind, 0) + 1
        known.first.setdefault(kind, request)
    shape.recent = [*shape.recent[-(RECENT - 1) :], dict(paths)]
    return [recount(shape, change) for change in changes]


def _parent_there(path: str, paths: Mapping[str, str]) -> bool:
    """A field of an array's items is missing only when the array has items."""
    parent = path.rsplit("[]", 1)[0] if "[]" in path else ""
    return not parent or f"{parent}[]" in paths


def recount(shape: Shape, change: Change) -> Change:
    """The change with how many of the recent payloads show it."""

    def shows(paths: Mapping[str, str]) -> bool:
        if change.kind == "missing":
            return change.path not in paths
        return paths.get(change.path) == change.type

    count = sum(1 for paths in shape.recent if shows(paths))
    return Change(
        change.kind, change.path, change.type, change.was, change.request, count, len(shape.recent)
    )


# -- who reads a path: hooks' templates (`event.data.score`) and a connector's (`row.score`)


def template_strings(value: object) -> Iterable[str]:
    """Every string in a spec (dicts, lists), where templates are."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from template_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from template_strings(item)


def reads(texts: Iterable[str], names: Iterable[str]) -> bool:
    """Does any template text read one of `names` (dotted, as written): the name itself or
    deeper (`event.data.score`, `event.data.score.value`), or one of its parents whole
    (`{{ event.data }}`, `{{ event }}`: they pass the field on)?"""
    patterns = []
    for name in names:
        patterns.append(rf"(?<![\w.]){re.escape(name)}(?!\w)")
        parts = name.split(".")
        patterns += [
            rf"(?<![\w.]){re.escape('.'.join(parts[:n]))}(?![\w.\[])" for n in range(1, len(parts))
        ]
    found = re.compile("|".join(patterns))
    return any(found.search(text) for text in texts)


def event_names(path: str) -> list[str]:
    """How a hook's template names an event path: `data.score` → `event.data.score`; of an
    array's items, the array (`data.items[].sku` → `event.data.items`)."""
    return [f"event.{path.split('[]')[0]}"]


def body_names(path: str, loops: Iterable[str]) -> list[str]:
    """How a connector's templates name a body path, its `for` loops' variables included:
    `body.data.rows[].score` is `row.score` under `row in body.data.rows`.

    >>> body_names("body.data.rows[].rules[].cid", ["row in body.data.rows", "rule in row.rules"])
    ['rule.cid']
    """
    names = [] if "[]" in path else [path]
    aliases: dict[str, str] = {}
    for loop in loops:
        match = re.fullmatch(r"\s*(\w+)\s+in\s+([\w.]+)\s*", loop)
        if match is None:
            continue
        var, source = match.groups()
        head, _, rest = source.partition(".")
        full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        aliases[var] = f"{full}[]"
    for var, full in aliases.items():
        if path.startswith(full) and "[]" not in path[len(full) :]:
            names.append(var + path[len(full) :])
    return names
