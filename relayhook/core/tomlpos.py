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
    counts: dict[KeyPath, int] = {}  # an array of tables' path -> its entries so far
    table: KeyPath = ()
    pending: str | None = None  # the closing quotes of the multi-line string we are inside
    for number, line in enumerate(text.splitlines(), start=1):
        if pending is not None:
            if pending in line:
                pending = None
            continue
        header = _HEADER.match(line)
        if header is not None:
            names = _split_key(header.group(2))
            path = _resolve(names[:-1], counts) + (names[-1],)
            if header.group(1) == "[[":
                index = counts.get(path, 0)
                counts[path] = index + 1
                path += (index,)
            table = path
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        lines.setdefault(table + tuple(_split_key(key.group(1))), number)
        pending = _opens_multiline(line[key.end() :])
    return lines


def _resolve(names: Sequence[str], counts: dict[KeyPath, int]) -> KeyPath:
    # `[events.data]` after `[[events]]` means the data of the latest events entry.
    path: KeyPath = ()
    for name in names:
        path += (name,)
        if path in counts:
            path += (counts[path] - 1,)
    return path


def _opens_multiline(value: str) -> str | None:
    """The quotes that close a multi-line string opened (and not closed) in `value`."""
    i = 0
    while i < len(value):
        if value[i] == "#":
            return None
        quote = next((q for q in ('"""', "'''") if value.startswith(q, i)), None)
        if quote is not None:
            end = value.find(quote, i + 3)
            if end < 0:
                return quote
            i = end + 3
        elif value[i] in "\"'":
            i = _end_of_string(value, i) + 1
        else:
            i += 1
    return None


def _end_of_string(value: str, start: int) -> int:
    quote, i = value[start], start + 1
    while i < len(value) and value[i] != quote:
        i += 2 if quote == '"' and value[i] == "\\" else 1
    return i


def value_line(text: str, line: int) -> int:
    """The line a key's value starts on: the next one after an opening `\"\"\"` + newline,
    which TOML drops from the string."""
    source = text.splitlines()
    if 0 < line <= len(source):
        after = source[line - 1].split("=", 1)[-1].strip()
        if after in ('"""', "'''"):
            return line + 1
    return line


def toml_error_line(message: str) -> int:
    """The line a tomllib error message names (`... (at line 3, column 7)`), else 1."""
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else 1


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
