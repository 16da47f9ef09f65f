"""The list-to-object construct (`{ each, key, value[, when] }`): golden tests on payloads of our
own making for the three families that send lists keyed by one field (form answers, CRM custom
fields, e-commerce line-item properties), then its rules and errors."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relayhook.core.connectors import load_connector
from relayhook.core.events import Event, keyed_event_id
from relayhook.core.hooks import build_hooks
from relayhook.core.mapping import InboundRequest, MappingError, map_request
from relayhook.core.outbound import render_request
from relayhook.core.templating import RenderError
from relayhook.core.values import compile_value
from relayhook.errors import ConnectorError

KEYED = Path(__file__).parent / "fixtures" / "keyed"
RECEIVED_AT = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)
RECEIVED = "2024-06-01T08:30:00.000Z"


def map_example(name: str) -> list[dict[str, Any]]:
    connector = load_connector(KEYED / f"{name}.toml")
    counter = itertools.count(1)
    body = connector.example_body() or b""
    events = map_request(
        connector,
        InboundRequest("POST", "", (), body),
        relay="golden",
        received_at=RECEIVED_AT,
        new_id=lambda: f"evt-{next(counter)}",
    )
    return [event.to_cloudevent() for event in events]


def cloudevent(
    id: str, source: str, type: str, subject: str | None, time: str, data: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"specversion": "1.0", "id": id, "source": source, "type": type}
    if subject is not None:
        out["subject"] = subject
    out |= {"time": time, "datacontenttype": "application/json", "data": data, "relay": "golden"}
    return out


GOLDEN = [
    pytest.param(
        "forms",
        [
            cloudevent(
                "evt-1",
                "forms/f-77",
                "forms.response.submitted",
                "ada@example.com",
                "2024-05-01T12:00:00.000Z",
                {
                    "form": "f-77",
                    "answers": {
                        "age": 36,
                        "newsletter": True,
                        "topics": {"labels": ["VR", "AR"]},
                        "rating": 4.5,
                        "comment": "Great demo",
                    },
                },
            )
        ],
        id="form answers: keyed by question, each value in its own type",
    ),
    pytest.param(
        "crm",
        [
            cloudevent(
                "evt-1",
                "crm",
                "crm.deal.updated",
                "9001",
                RECEIVED,
                {
                    "title": "Arcade franchise",
                    "fields": {
                        "region": "EMEA",
                        "seats": 24,
                        "tags": ["vip", "q3"],
                        "signed": False,
                    },
                    "by_id": {
                        "cf_1": {"name": "Region", "value": "EMEA"},
                        "cf_2": {"name": "Seats", "value": 24},
                        "cf_3": {"name": "Renewal", "value": None},
                        "cf_4": {"name": "Tags", "value": ["vip", "q3"]},
                        "cf_5": {"name": "Signed", "value": False},
                    },
                },
            )
        ],
        id="CRM custom fields: by name with `when`, and by id with a table as value",
    ),
    pytest.param(
        "shop",
        [
            cloudevent(
                keyed_event_id("golden", "5001:VR-60"),
                "shop/orders/5001",
                "shop.line_item.ordered",
                None,
                RECEIVED,
                {
                    "sku": "VR-60",
                    "quantity": 2,
                    "properties": {"player_name": "Ada", "session_length": "60"},
                },
            ),
            cloudevent(
                keyed_event_id("golden", "5001:GIFT"),
                "shop/orders/5001",
                "shop.line_item.ordered",
                None,
                RECEIVED,
                {"sku": "GIFT", "quantity": 1, "properties": {}},
            ),
            cloudevent(
                keyed_event_id("golden", "5001"),
                "shop/orders/5001",
                "shop.order.placed",
                None,
                RECEIVED,
                {
                    "items": {
                        "VR-60": {
                            "quantity": 2,
                            "properties": {"Player name": "Ada", "Session length": "60"},
                        },
                        "GIFT": {"quantity": 1, "properties": {}},
                    }
                },
            ),
        ],
        id="line-item properties: inside a `for` loop, and nested in a value",
    ),
]


@pytest.mark.parametrize(("connector", "expected"), GOLDEN)
def test_golden(connector: str, expected: list[dict[str, Any]]) -> None:
    assert map_example(connector) == expected


def test_a_form_that_gains_a_question_needs_no_change() -> None:
    connector = load_connector(KEYED / "forms.toml")
    payload = json.loads((KEYED / "examples" / "forms.json").read_bytes())
    payload["answers"].append({"field": {"ref": "visits"}, "type": "number", "number": 3})
    events = map_request(
        connector,
        InboundRequest("POST", "", (), json.dumps(payload).encode()),
        relay="golden",
        received_at=RECEIVED_AT,
        new_id=lambda: "e",
    )
    assert events[0].data["answers"]["visits"] == 3


CASES = [
    pytest.param(
        {"each": "x in items", "key": "{{ x.k }}", "value": "{{ x.v }}"},
        {"items": [{"k": "a", "v": 1}, {"k": "a", "v": 2}]},
        {"a": 2},
        id="a later item wins a repeated key",
    ),
    pytest.param(
        {"each": "k, v in obj.items()", "key": "{{ k | upper }}", "value": "{{ v }}"},
        {"obj": {"a": [1], "b": None}},
        {"A": [1], "B": None},
        id="pairs unpack, null and lists kept",
    ),
    pytest.param(
        {"each": "x in items", "key": "{{ x.id }}", "value": "{{ x }}"},
        {"items": [{"id": 7}, {"id": 7.5}]},
        {"7": {"id": 7}, "7.5": {"id": 7.5}},
        id="numeric keys become text",
    ),
    pytest.param(
        {"each": "x in items", "key": "{{ x }}", "value": "v"},
        {"items": []},
        {},
        id="an empty list gives an empty object",
    ),
    pytest.param(
        [{"each": "x in items", "key": "k{{ x }}", "value": "{{ x * 2 }}"}],
        {"items": [1, 2]},
        [{"k1": 2, "k2": 4}],
        id="inside a list",
    ),
    pytest.param(
        {"each": "x in items", "key": "{{ x }}", "value": "{{ x }}", "extra": "y"},
        {"x": 1},
        {"each": "x in items", "key": 1, "value": 1, "extra": "y"},
        id="a table with other keys is data",
    ),
]


@pytest.mark.parametrize(("value", "context", "expected"), CASES)
def test_each(value: Any, context: dict[str, Any], expected: Any) -> None:
    assert compile_value(value, "data").render(context) == expected


ERRORS = [
    pytest.param(
        {"each": "x in items", "key": "{{ x }}", "value": "v"},
        {"items": [{"a": 1}]},
        "data.key: a key must be a non-empty text or a number, got an object",
        id="a key that is an object",
    ),
    pytest.param(
        {"each": "x in items", "key": "{{ x }}", "value": "v"},
        {"items": {"a": 1}},
        "data.each: expected a list to loop over, got an object",
        id="an object to loop over",
    ),
    pytest.param(
        {"each": "x in items", "key": "{{ x.name }}", "value": "v"},
        {"items": [{"nme": 1}]},
        "data.key: 'dict object' has no attribute 'name'",
        id="a missing key is an error, as everywhere",
    ),
]


@pytest.mark.parametrize(("value", "context", "message"), ERRORS)
def test_each_errors(value: Any, context: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError) as caught:
        compile_value(value, "data").render(context)
    assert str(caught.value) == message


def test_a_bad_construct_fails_at_load_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'id = "bad"\ntitle = "B"\nauth = { scheme = "none" }\n\n[[events]]\n'
        'type = "b.c"\nsource = "b"\n'
        'data.x = { each = "no loop here", key = "{{ 1 }}", value = "v" }\n'
    )
    with pytest.raises(ConnectorError) as caught:
        load_connector(path)
    assert str(caught.value) == (
        f"{path}:events[0].data.x.each:8: expected `name in expression`, got 'no loop here'"
    )


def test_a_template_error_is_a_400_naming_the_key() -> None:
    connector = load_connector(KEYED / "forms.toml")
    body = b'{"form_id": "f", "respondent": "r", "submitted_at": "", "answers": [{"type": "x"}]}'
    with pytest.raises(MappingError) as caught:
        map_request(
            connector,
            InboundRequest("POST", "", (), body),
            relay="r",
            received_at=RECEIVED_AT,
            new_id=lambda: "e",
        )
    assert str(caught.value) == (
        "forms: events[0].data.answers.key: 'dict object' has no attribute 'field'"
    )


def test_hooks_have_it_too() -> None:
    hooks = build_hooks(
        [
            {
                "name": "n",
                "events": ["*"],
                "url": "https://example.com/",
                "body": {
                    "fields": {
                        "each": "f in event.data.fields",
                        "key": "{{ f.name }}",
                        "value": "{{ f.value }}",
                    }
                },
            }
        ]
    )
    event = Event("e", "s", "t", None, RECEIVED, {"fields": [{"name": "a", "value": 1}]}, "r")
    request = render_request(hooks["n"], event, delivery_id="d", secrets={}, now=0)
    assert json.loads(request.body) == {"fields": {"a": 1}}
