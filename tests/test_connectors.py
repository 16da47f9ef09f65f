"""Connectors: the shipped ones load and map their examples; broken ones fail at load with
`file:key:line: message`; `let`/`when`/`for` behave; `relayhook check`, `map` and `schema`."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from relayhook.cli import main
from relayhook.cli.authoring import schema_json
from relayhook.core.connectors import SHIPPED_DIR, Connector, load_connector
from relayhook.core.events import Event
from relayhook.core.mapping import MAX_EVENTS, InboundRequest, MappingError, map_request
from relayhook.errors import ConnectorError

SHIPPED = sorted(SHIPPED_DIR.glob("*.toml"))
RECEIVED_AT = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_config_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads ./relayhook.toml when present: every test here runs in an empty folder.
    monkeypatch.chdir(tmp_path)


def map_body(
    connector: Connector, body: bytes = b"", *, method: str = "POST", query: str = ""
) -> list[Event]:
    headers = (("content-type", "application/json"),) if body else ()
    counter = itertools.count(1)
    return map_request(
        connector,
        InboundRequest(method, query, headers, body),
        relay="test",
        received_at=RECEIVED_AT,
        new_id=lambda: f"evt-{next(counter)}",
    )


# --- the shipped connectors ----------------------------------------------------------------


def test_the_five_providers_are_shipped() -> None:
    assert {path.stem for path in SHIPPED} >= {
        "gmetri",
        "synthesisvr",
        "netmera",
        "gamify",
        "generic",
    }


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in SHIPPED])
def test_every_shipped_connector_loads(path: Path) -> None:
    connector = load_connector(path)
    assert connector.id == path.stem
    assert connector.rules


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in SHIPPED])
def test_every_shipped_example_maps_to_an_event(path: Path) -> None:
    connector = load_connector(path)
    body = connector.example_body() or b""
    query = urlencode(connector.spec.example_query)
    assert body or query, "a connector ships an example body or an example query"
    for method in connector.spec.accept.methods:
        if body and method == "GET":
            continue
        assert map_body(connector, body, method=method, query=query), method


def test_schema_json_is_current() -> None:
    committed = (SHIPPED_DIR / "schema.json").read_text(encoding="utf-8")
    assert committed == schema_json() + "\n", (
        "connectors/schema.json is stale: run `relayhook schema > connectors/schema.json`"
    )


def test_schema_command_prints_the_schema() -> None:
    out = io.StringIO()
    assert main(["schema"], out=out) == 0
    assert json.loads(out.getvalue())["title"] == "Relayhook connector"


# --- broken connectors ---------------------------------------------------------------------

BASE = """\
id = "demo"
title = "Demo"
auth = { scheme = "none" }
accept = { methods = ["POST"], formats = ["json-object"] }

[[events]]
name = "first"
type = "demo.first"
source = "demo/{{ relay }}"

[[events]]
for = ["row in body.rows"]
type = "demo.row"
source = "demo"
subject = "{{ row.identifier }}"
data = { id = "{{ row.id }}", nested = { deep = "{{ row.x }}" } }
"""

SUBTABLE_DATA = """\
[events.data]
id = "{{ row.id }}"
[events.data.nested]
deep = "{{ row.x }"
"""

BROKEN = [
    pytest.param(
        "subject = ",
        "sbject = ",
        "events[1].sbject",
        15,
        "unknown key",
        id="typo'd key",
    ),
    pytest.param(
        'subject = "{{ row.identifier }}"',
        'subject = "{{ row.identifier }"',
        "events[1].subject",
        15,
        "unexpected '}'",
        id="bad template",
    ),
    pytest.param(
        '"row in body.rows"',
        '"row body.rows"',
        "events[1].for[0]",
        12,
        "name in expression",
        id="for without in",
    ),
    pytest.param(
        '"row in body.rows"',
        '"row in body.rows)"',
        "events[1].for[0]",
        12,
        "unexpected ')'",
        id="for with a bad expression",
    ),
    pytest.param(
        '"row in body.rows"',
        '"body in body.rows"',
        "events[1].for[0]",
        12,
        "hides another variable",
        id="for hiding a request variable",
    ),
    pytest.param(
        '"row in body.rows"',
        '"a in b.rows", "b in body.x"',
        "events[1].for[0]",
        12,
        "bound after it",
        id="for reading a later loop's variable",
    ),
    pytest.param(
        'id = "demo"',
        'id = "other"',
        "id",
        1,
        "must equal the file name",
        id="id not matching the file name",
    ),
    pytest.param(
        '{ scheme = "none" }',
        '{ scheme = "oauth" }',
        "auth",
        3,
        "'oauth'",
        id="unknown auth scheme",
    ),
    pytest.param(
        '{ scheme = "none" }',
        '{ scheme = "hmac", header = "X-Sig", algorithm = "md5" }',
        "auth.algorithm",
        3,
        "sha256",
        id="unknown hmac algorithm",
    ),
    pytest.param(
        '{ scheme = "none" }',
        '{ scheme = "header" }',
        "auth.header",
        3,
        "required key",
        id="header auth without its header",
    ),
    pytest.param(
        '["POST"]',
        '["FETCH"]',
        "accept.methods[0]",
        4,
        "'POST'",
        id="unknown method",
    ),
    pytest.param(
        'title = "Demo"',
        'title = "Demo',
        "(toml)",
        2,
        "",
        id="invalid TOML",
    ),
    pytest.param(
        'source = "demo"\n',
        "source = demo\n",
        "(toml)",
        14,
        "",
        id="invalid TOML further down",
    ),
    pytest.param(
        'type = "demo.row"\n',
        "",
        "events[1].type",
        11,
        "required key is missing",
        id="missing required key",
    ),
    pytest.param(
        'title = "Demo"',
        'title = "Demo"\ncolour = "red"',
        "colour",
        3,
        "unknown key",
        id="unknown top-level key",
    ),
    pytest.param(
        'deep = "{{ row.x }}"',
        'deep = "{{ row.x }"',
        "events[1].data.nested.deep",
        16,
        "unexpected '}'",
        id="bad template in an inline table",
    ),
    pytest.param(
        'data = { id = "{{ row.id }}", nested = { deep = "{{ row.x }}" } }\n',
        SUBTABLE_DATA,
        "events[1].data.nested.deep",
        19,
        "unexpected '}'",
        id="bad template in a sub-table",
    ),
    pytest.param(
        'name = "first"',
        'name = "first"\nlet = { x = "{{ body. }}" }',
        "events[0].let.x",
        8,
        "",
        id="bad let",
    ),
    pytest.param(
        'name = "first"',
        'name = "first"\nwhen = """{{ body.a\n  and ) }}"""',
        "events[0].when",
        9,
        "unexpected ')'",
        id="error on the second line of a multi-line template",
    ),
    pytest.param(
        'title = "Demo"',
        'title = "Demo"\nsetup = """\nline one\nline two {{ relay_url }\n"""',
        "setup",
        5,
        "unexpected '}'",
        id="error in a multi-line string that starts with a newline",
    ),
    pytest.param(
        'name = "first"',
        'name = "first"\nwhen = "{{ body.paid }} and {{ body.shipped }}"',
        "events[0].when",
        8,
        "a condition is one {{ expression }}",
        id="a when that is text, not one expression",
    ),
    pytest.param(
        'title = "Demo"',
        'title = "Demo"\nexample = "examples/nope.json"',
        "example",
        3,
        "no such file",
        id="missing example file",
    ),
]


def write_broken(tmp_path: Path, old: str, new: str) -> Path:
    assert old in BASE
    path = tmp_path / "demo.toml"
    path.write_text(BASE.replace(old, new, 1), encoding="utf-8")
    return path


def test_the_base_of_the_broken_connectors_loads(tmp_path: Path) -> None:
    assert load_connector(write_broken(tmp_path, "", "")).id == "demo"


@pytest.mark.parametrize(("old", "new", "key", "line", "words"), BROKEN)
def test_a_broken_connector_names_file_key_and_line(
    tmp_path: Path, old: str, new: str, key: str, line: int, words: str
) -> None:
    path = write_broken(tmp_path, old, new)
    with pytest.raises(ConnectorError) as caught:
        load_connector(path)
    error = caught.value
    assert (error.file, error.key, error.line) == (str(path), key, line)
    assert str(error) == f"{path}:{key}:{line}: {error.message}"
    assert words in error.message


# --- let, when and for ---------------------------------------------------------------------

LEVELS = """\
id = "levels"
title = "Levels"
auth = { scheme = "none" }

[[events]]
name = "tags of rows"
let = { org = "{{ body.org | default('none') | upper }}" }
when = "{{ body.kind == 'rows' }}"
for = ["row in body.rows", "tag in row.tags"]
type = "levels.tag"
source = "levels/{{ org }}"
subject = "{{ row.id }}"
data = "{{ tag }}"

[[events]]
name = "variables"
when = "{{ body.kind == 'vars' }}"
for = ["name, value in body.vars | dictsort"]
type = "levels.var"
source = "levels"
subject = "{{ name }}"
data = "{{ value }}"

[[events]]
name = "kept items"
for = ["item in body.entries | default([])"]
when = "{{ item.keep }}"
type = "levels.kept"
source = "levels"
subject = "{{ item.id }}"
data = "{{ item }}"
"""

NO_RULE = """\
id = "norule"
title = "No rule"
auth = { scheme = "none" }

[[events]]
name = "created"
when = "{{ body.action == 'create' }}"
type = "norule.created"
source = "norule"

[[events]]
name = "deleted"
when = "{{ body.action == 'delete' }}"
type = "norule.deleted"
source = "norule"
"""


def connector_from(tmp_path: Path, name: str, text: str) -> Connector:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_connector(path)


@pytest.fixture
def levels(tmp_path: Path) -> Connector:
    return connector_from(tmp_path, "levels", LEVELS)


def summary(events: list[Event]) -> list[tuple[str, str, str | None, Any]]:
    return [(e.type, e.source, e.subject, e.data) for e in events]


def test_nested_loops_and_let(levels: Connector) -> None:
    body = {
        "kind": "rows",
        "org": "acme",
        "rows": [
            {"id": 1, "tags": ["a", "b"]},
            {"id": 2, "tags": []},
            {"id": 3, "tags": ["c"]},
        ],
    }
    events = map_body(levels, json.dumps(body).encode())
    assert summary(events) == [
        ("levels.tag", "levels/ACME", "1", "a"),
        ("levels.tag", "levels/ACME", "1", "b"),
        ("levels.tag", "levels/ACME", "3", "c"),
    ]


def test_a_loop_unpacks_pairs(levels: Connector) -> None:
    events = map_body(levels, b'{"kind": "vars", "vars": {"b": 2, "a": 1}}')
    assert summary(events) == [("levels.var", "levels", "a", 1), ("levels.var", "levels", "b", 2)]


def test_a_when_on_a_loop_variable_filters_items(levels: Connector) -> None:
    items = [{"id": 1, "keep": True}, {"id": 2, "keep": False}, {"id": 3, "keep": 1}]
    events = map_body(levels, json.dumps({"kind": "items", "entries": items}).encode())
    assert summary(events) == [
        ("levels.kept", "levels", "1", items[0]),
        ("levels.kept", "levels", "3", items[2]),
    ]


def test_a_when_false_for_every_item_gives_no_events(levels: Connector) -> None:
    body = b'{"kind": "items", "entries": [{"id": 1, "keep": false}]}'
    assert map_body(levels, body) == []


def test_a_false_request_when_skips_the_rule_before_its_loops(levels: Connector) -> None:
    # `rows` is not a list, but the rule that loops over it does not apply to a `vars` request.
    events = map_body(levels, b'{"kind": "vars", "vars": {"a": 1}, "rows": 5}')
    assert summary(events) == [("levels.var", "levels", "a", 1)]


def test_a_loop_over_something_else_than_a_list_says_so(levels: Connector) -> None:
    with pytest.raises(MappingError, match=r"events\[0\]\.for\[0\]: expected a list"):
        map_body(levels, b'{"kind": "rows", "rows": 5}')


def test_no_rule_applies_is_a_mapping_error_naming_the_rules(tmp_path: Path) -> None:
    connector = connector_from(tmp_path, "norule", NO_RULE)
    assert [e.type for e in map_body(connector, b'{"action": "delete"}')] == ["norule.deleted"]
    with pytest.raises(MappingError, match="no event rule applies") as caught:
        map_body(connector, b'{"action": "update"}')
    assert "created" in str(caught.value) and "deleted" in str(caught.value)


# --- the CLI -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "line"),
    [
        pytest.param("subject = ", "sbject = ", "events[1].sbject", 15, id="typo"),
        pytest.param(
            '"{{ row.identifier }}"',
            '"{{ row.identifier }"',
            "events[1].subject",
            15,
            id="bad template",
        ),
        pytest.param('id = "demo"', 'id = "other"', "id", 1, id="id not the file name"),
        pytest.param('title = "Demo"', 'title = "Demo', "(toml)", 2, id="invalid TOML"),
    ],
)
def test_check_reports_file_key_line(
    tmp_path: Path, old: str, new: str, key: str, line: int
) -> None:
    path = write_broken(tmp_path, old, new)
    out = io.StringIO()
    assert main(["check", str(path)], out=out) != 0
    assert out.getvalue().startswith(f"{path}:{key}:{line}: ")


def test_check_passes_the_shipped_connectors() -> None:
    out = io.StringIO()
    assert main(["check", *map(str, SHIPPED)], out=out) == 0
    assert out.getvalue() == ""
    assert main(["check"], out=io.StringIO()) == 0


def test_map_prints_one_json_line_per_event() -> None:
    out = io.StringIO()
    payload = SHIPPED_DIR / "examples" / "gmetri-rules.json"
    assert main(["map", "gmetri", str(payload)], out=out) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["type"] for e in events] == ["gmetri.rule.triggered"] * 4
    assert [e["time"] for e in events] == [
        "1970-01-01T00:02:03.456Z",
        "1970-01-01T00:02:03.457Z",
        "1970-01-01T00:02:03.458Z",
        "1970-01-01T00:03:54.561Z",
    ]


def test_map_with_query_parameters() -> None:
    out = io.StringIO()
    code = main(["map", "netmera", "--query", "trigger=geofence", "--query", "user=u9"], out=out)
    assert code == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert (event["type"], event["subject"]) == ("netmera.geofence.triggered", "u9")
    # --query replaces the example's parameters of the same name and keeps the others.
    assert event["data"] == {"trigger": "geofence", "user": "u9", "campaign": "spring-sale"}


def test_map_a_printed_seed_body_fails_saying_why(capsys: pytest.CaptureFixture[str]) -> None:
    printed = Path(__file__).parent / "fixtures" / "seeds" / "gmetri-rules.printed.txt"
    out = io.StringIO()
    assert main(["map", "gmetri", str(printed)], out=out) != 0
    assert out.getvalue() == ""
    assert "body is not valid JSON" in capsys.readouterr().err


def test_map_an_unknown_connector_names_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["map", "nope"], out=io.StringIO()) != 0
    assert "gmetri" in capsys.readouterr().err


def test_one_request_makes_at_most_max_events(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text(
        'id = "many"\ntitle = "Many"\nauth = { scheme = "none" }\n'
        'accept = { formats = ["query"] }\n\n[[events]]\n'
        'for = ["a in range(40000) | list", "b in [1, 2]"]\ntype = "many.x"\nsource = "m"\n',
        encoding="utf-8",
    )
    request = InboundRequest("POST", "", (), b"")
    with pytest.raises(MappingError, match=f"more than {MAX_EVENTS} events"):
        map_request(
            load_connector(path),
            request,
            relay="r",
            received_at=datetime.now(UTC),
            new_id=lambda: "x",
        )


def test_a_loop_may_go_over_an_iterator(tmp_path: Path) -> None:
    path = tmp_path / "pairs.toml"
    path.write_text(
        'id = "pairs"\ntitle = "Pairs"\nauth = { scheme = "none" }\n\n[[events]]\n'
        'for = ["k, v in body | items"]\ntype = "pairs.{{ k }}"\nsource = "p"\n'
        'data = "{{ v }}"\n',
        encoding="utf-8",
    )
    request = InboundRequest("POST", "", (), b'{"a": 1, "b": 2}')
    events = map_request(
        load_connector(path), request, relay="r", received_at=datetime.now(UTC), new_id=lambda: "x"
    )
    assert [(e.type, e.data) for e in events] == [("pairs.a", 1), ("pairs.b", 2)]
