"""Line numbers of TOML key paths, for `file:key:line` errors."""

from __future__ import annotations

import tomllib

import pytest

from relayhook.core.tomlpos import format_path, line_of, locate_error, locate_keys

CONNECTOR = '''\
# a comment = not a key
id = "demo"
auth = { scheme = "header", header = "X-Token" }
site."example.com".enabled = true
a.b.c = 1
description = """
fake = "inside a multi-line string"
[[events]] also inside
"""
literal = \'\'\'
fake2 = 1
\'\'\'
oneline = """no newline inside"""

[accept]
methods = ["GET"]

[[events]]
type = "a"
for = [
  "row in body.rows",
]

[events.data]
k = "{{ row }}"

[[events]]  # the second rule
type = "b"
data = { x = "{{ body }}" }

[[events.sub]]
z = 1

[[events.sub]]
z = 2

[events.sub.inner]
w = 3

["quoted key"]
q = 1
'''

LINES = locate_keys(CONNECTOR)


def test_the_sample_is_valid_toml() -> None:
    assert tomllib.loads(CONNECTOR)["events"][1]["sub"][1]["inner"] == {"w": 3}


@pytest.mark.parametrize(
    ("path", "line"),
    [
        pytest.param(("id",), 2, id="top-level key"),
        pytest.param(("auth",), 3, id="inline table"),
        pytest.param(("auth", "header"), 3, id="key inside an inline table: the table's line"),
        pytest.param(("site", "example.com", "enabled"), 4, id="dotted key with a quoted part"),
        pytest.param(("a", "b", "c"), 5, id="dotted key"),
        pytest.param(("description",), 6, id="multi-line string"),
        pytest.param(("literal",), 10, id="multi-line literal string"),
        pytest.param(("oneline",), 13, id="multi-line quotes on one line"),
        pytest.param(("accept",), 15, id="table header"),
        pytest.param(("accept", "methods"), 16, id="key of a table"),
        pytest.param(("events", 0), 18, id="array of tables, first entry"),
        pytest.param(("events", 0, "type"), 19, id="key of the first entry"),
        pytest.param(("events", 0, "for"), 20, id="multi-line array"),
        pytest.param(("events", 0, "for", 0), 20, id="item of a multi-line array: its key's line"),
        pytest.param(("events", 0, "data"), 24, id="sub-table of an array entry"),
        pytest.param(("events", 0, "data", "k"), 25, id="key of that sub-table"),
        pytest.param(("events", 1), 27, id="second entry, header with a comment"),
        pytest.param(("events", 1, "type"), 28, id="key of the second entry"),
        pytest.param(("events", 1, "data", "x"), 29, id="inline table of the second entry"),
        pytest.param(("events", 1, "sub", 0), 31, id="nested array of tables"),
        pytest.param(("events", 1, "sub", 1, "z"), 35, id="key of a nested entry"),
        pytest.param(("events", 1, "sub", 1, "inner", "w"), 38, id="sub-table of a nested entry"),
        pytest.param(("quoted key", "q"), 41, id="quoted table name"),
        pytest.param(("events", 1, "nope"), 27, id="unknown key: its table's line"),
        pytest.param(("nowhere",), 1, id="nothing matches: line 1"),
        pytest.param(("fake",), 1, id="a key inside a multi-line string is no key"),
        pytest.param(("fake2",), 1, id="nor inside a literal one"),
    ],
)
def test_line_of(path: tuple[str | int, ...], line: int) -> None:
    assert line_of(LINES, path) == line


NESTED = """\
[[events]]
type = "a"
[[events.sub]]
z = 1
[[events.sub]]
z = 2

[[events]]
type = "b"
[[events.sub]]
z = 3
"""

IN_LITERAL = '''\
note = 'three quotes """ in a literal string'
after = 1
'''

IN_COMMENT = '''\
c = "x"  # a comment with three quotes """
after = 2
'''


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        pytest.param(NESTED, ("events", 0, "sub", 1, "z"), 6, id="nested array, first parent"),
        pytest.param(
            NESTED,
            ("events", 1, "sub", 0),
            10,
            id="nested array restarts at 0 under the next parent",
        ),
        pytest.param(NESTED, ("events", 1, "sub", 0, "z"), 11, id="its key"),
        pytest.param(IN_LITERAL, ("after",), 2, id='""" inside a single-line literal string'),
        pytest.param(IN_COMMENT, ("after",), 2, id='""" inside a comment'),
    ],
)
def test_line_of_edge_cases(text: str, path: tuple[str | int, ...], line: int) -> None:
    tomllib.loads(text)  # valid TOML
    assert line_of(locate_keys(text), path) == line


@pytest.mark.parametrize(
    ("path", "text"),
    [
        pytest.param((), "(top level)", id="empty"),
        pytest.param(("id",), "id", id="one key"),
        pytest.param(("events", 0, "data", "rule"), "events[0].data.rule", id="with an index"),
        pytest.param(("events", 1, "for", 0), "events[1].for[0]", id="two indexes"),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


def test_locate_error() -> None:
    assert locate_error(CONNECTOR, ("events", 1, "sub", 1, "nope")) == ("events[1].sub[1].nope", 34)
