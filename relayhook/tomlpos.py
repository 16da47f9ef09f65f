"""Line numbers for TOML keys, so that errors can say `file:key:line`.

`tomllib` parses without positions; this scanner finds the line where each key path is defined
(`events[0].subject`). It understands table headers, arrays of tables, dotted keys and multi-line
strings; a key inside an inline table resolves to the line of the table's own key.

    >>> locate_keys('[[events]]\\ntype = "x"\\n')[("events", 0, "type")]
    2
"""

from __future__ import annotations

import re
from collections.abc import Sequence

KeyPath = tuple[str | int, ...]

_NAME = r"""(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)"""
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(rf"^\s*({_NAME}(?:\s*\.\s*{_NAME})*)\s*=")
_PART = re.compile(rf"\s*({_NAME})\s*(?:\.|$)")


def _split_key(text: str) -> list[str]:
    return [part.strip("\"'") for part in _PART.findall(text)]


def locate_keys(text: str) -> dict[KeyPath, int]:
    """Map every key path defined in `text` to its 1-based line number."""
    lines: dict[KeyPath, int] = {}
    array_counts: dict[tuple[str, ...], int] = {}
    table: KeyPath = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header is not None:
            names = _split_key(header.group(2))
            if header.group(1) == "[[":
                index = array_counts.get(tuple(names), 0)
                array_counts[tuple(names)] = index + 1
                table = _resolve(tuple(names), array_counts) + (index,)
            else:
                table = _resolve(tuple(names), array_counts)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        path = table + tuple(_split_key(key.group(1)))
        lines.setdefault(path, number)
        rest = line[key.end() :]
        for quote in ('"""', "'''"):
            if rest.count(quote) % 2 == 1:
                in_multiline = quote
    return lines


def _resolve(names: tuple[str, ...], array_counts: dict[tuple[str, ...], int]) -> KeyPath:
    # `[events.data]` after `[[events]]` means the data of the latest events entry.
    path: list[str | int] = []
    for depth, name in enumerate(names):
        path.append(name)
        prefix = names[: depth + 1]
        if prefix in array_counts and depth < len(names) - 1:
            path.append(array_counts[prefix] - 1)
    return tuple(path)


def line_of(lines: dict[KeyPath, int], path: Sequence[str | int]) -> int:
    """The line of `path`, or of its longest defined prefix; 1 if nothing matches."""
    key = tuple(path)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return 1


def format_path(path: Sequence[str | int]) -> str:
    """`("events", 0, "data", "rule")` -> `events[0].data.rule`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def locate_error(text: str, loc: Sequence[str | int]) -> tuple[str, int]:
    """(`key.path`, line) of a validation error's location in a TOML text."""
    return format_path(loc), line_of(locate_keys(text), loc)
