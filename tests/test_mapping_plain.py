"""A body that is JSON data as parsed becomes an event's data without the walk and copy that
`_json_data` does; the events and errors are the same as with the walk, hostile bodies included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest

from relayhook.core import mapping
from relayhook.core.connectors import load_connector
from relayhook.core.mapping import InboundRequest, MappingError, map_request
from tests.test_hostile import HOSTILE_NUMBERS, HOSTILE_STRINGS, SHIPPED_DIR

GENERIC = load_connector(SHIPPED_DIR / "generic.toml")
BODIES = [
    *(f'{{"n": {token}, "list": [1, {token}]}}' for token in HOSTILE_NUMBERS.values()),
    *(f'{{"s": {token}, "k": [{token}]}}' for token in HOSTILE_STRINGS.values()),
    '{"a": 1.5, "b": [true, null, "x"], "c": {"d": -0.0}}',
    "[]",
    "{}",
    '[{"a": 1e308}]',
    '{"a": 1e309}',
    '{"NaN": "Infinity"}',
    '{"deep": ' + "[" * 100 + "]" * 100 + "}",
]


def outcome(body: str) -> Any:
    request = InboundRequest("POST", "", (("content-type", "application/json"),), body.encode())
    try:
        events = map_request(
            GENERIC,
            request,
            relay="r",
            new_id=lambda: "id",
            received_at=datetime(2024, 1, 1, tzinfo=UTC),
        )
    except MappingError as exc:
        return "error", str(exc)
    return "events", repr([event.data for event in events])


@pytest.mark.parametrize("body", BODIES)
def test_a_plain_body_maps_as_the_walked_one_does(body: str) -> None:
    walked = mapping._request_scope

    def never_plain(*args: Any) -> Any:
        return walked(*args)[0], mapping._NOT_PLAIN

    with mock.patch.object(mapping, "_request_scope", never_plain):
        expected = outcome(body)
    assert outcome(body) == expected


def test_the_body_is_shared_not_copied_when_it_is_plain() -> None:
    request = InboundRequest("POST", "", (), b'{"rows": [1, 2]}')
    scope, plain = mapping._request_scope(GENERIC, request, "r")
    assert plain is scope["body"]
    request = InboundRequest("POST", "", (), b'{"rows": [NaN]}')
    assert mapping._request_scope(GENERIC, request, "r")[1] is mapping._NOT_PLAIN


EDGES = [
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    '"12345678901234567890"',
    "1.7976931348623157e308",
    "1.7976931348623157e309",
    "5e-324",
    "0.30000000000000004",
    '"\\ud83d\\ude00"',
    '"\\ud800"',
    '"\\u0000"',
    '{"a": 1, "a": 2}',
    "\ufeff[1]",
    " \t[1]\r\n",
    "[1,]",
    "",
]


@pytest.mark.parametrize("body", [*BODIES, *EDGES])
def test_the_fast_parser_reads_every_body_as_json_does(body: str) -> None:
    """orjson reads a body only where it gives what json gives, type for type: integers past
    64 bits (which orjson would make floats) and everything it refuses go to json."""

    def slow(data: bytes) -> Any:
        with mock.patch.object(mapping, "_MAYBE_LONG_INTEGER", b""):  # always "maybe": json
            return parse(data)

    def parse(data: bytes) -> Any:
        try:
            value, plain = mapping._parse_json(data)
        except MappingError as exc:
            return "error", str(exc)
        return repr(value), [type(leaf) for leaf in leaves(value)], plain

    for data in (body.encode(), f"[{body}]".encode()):
        assert parse(data) == slow(data), data


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]
