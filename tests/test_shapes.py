"""A payload that changed shape (issue 21, item 2): the pure shape rules in tables, then the
watch that learns them from stored requests on every engine: a provider that adds, drops and
retypes fields opens exactly those problems, naming the hooks and connector rules that read
the changed paths, and the shapes survive a restart of the watch."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import run
from test_store import make_request

from relayhook.core.connectors import SHIPPED_DIR, load_connectors
from relayhook.core.events import Event
from relayhook.core.hooks import build_hooks
from relayhook.core.shapes import (
    LEARN,
    Shape,
    body_names,
    event_names,
    observe,
    paths_of,
    reads,
    recount,
)
from relayhook.live import LiveConfig
from relayhook.relays import Relay
from relayhook.shapewatch import ShapeWatch
from relayhook.store import Store

NOW = 1796306400.0
BASE = {"user": {"email": "a@example.com"}, "score": 75, "items": [{"sku": "A"}, {"sku": "B"}]}


def test_paths_of_names_fields_with_their_types_and_samples_arrays() -> None:
    body = {"a": {"b": [1, 2, {"c": None}]}, "d": None, "e": [{"f": "x"}] * 500, "g": True}
    assert paths_of(body) == {
        "a": "object",
        "a.b": "array",
        "a.b[]": "number",
        "a.b[].c": "null",
        "d": "null",
        "e": "array",
        "e[]": "object",
        "e[].f": "string",
        "g": "boolean",
    }


def learned(body: dict[str, Any]) -> Shape:
    shape = Shape()
    for n in range(LEARN):
        assert observe(shape, paths_of(body), f"req_{n}") == []  # learning: nothing reported
    return shape


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(BASE, [], id="the same shape: nothing"),
        pytest.param(
            {**BASE, "coupon": "X1"}, [("added", "coupon", "string", None)], id="a new field"
        ),
        pytest.param(
            {k: v for k, v in BASE.items() if k != "score"},
            [("missing", "score", None, "number")],
            id="a field that was always there",
        ),
        pytest.param(
            {**BASE, "score": "75"}, [("retyped", "score", "string", "number")], id="a new type"
        ),
        pytest.param({**BASE, "score": None}, [], id="null is no new type"),
        pytest.param({**BASE, "items": []}, [], id="an empty list lacks no item field"),
        pytest.param(
            {**BASE, "items": [{"sku": 7}]},
            [("retyped", "items[].sku", "number", "string")],
            id="in an array's items",
        ),
    ],
)
def test_observe_reports_changes_once_learned(
    body: dict[str, Any], expected: list[tuple[Any, ...]]
) -> None:
    shape = learned(BASE)
    changes = observe(shape, paths_of(body), "req_new")
    assert [(c.kind, c.path, c.type, c.was) for c in changes] == expected
    assert all(c.request == "req_new" for c in changes)


def test_a_change_counts_in_how_many_recent_payloads_it_shows() -> None:
    shape = learned(BASE)
    (change,) = observe(shape, paths_of({**BASE, "score": "75"}), "req_t0")
    for n in range(1, 12):  # once seen, the type is known: only the first reports it ...
        assert observe(shape, paths_of({**BASE, "score": "75"}), f"req_t{n}") == []
    counted = recount(shape, change)  # ... and the count follows
    assert counted.text() == "`score` is now a text in 12 of the last 20 payloads (was a number)"
    assert shape.field_list()[-1] == {
        "path": "user.email",
        "type": "string",
        "types": ["string"],
        "present": 1.0,
    }
    assert Shape.from_json(json.loads(json.dumps(shape.to_json()))) == shape


@pytest.mark.parametrize(
    ("texts", "names", "found"),
    [
        (["{{ event.data.score }}"], ["event.data.score"], True),
        (["{{ event.data.score_total }}"], ["event.data.score"], False),
        (["{{ event.data }}"], ["event.data.score"], True),
        (["{{ event.data.user }}"], ["event.data.score"], False),
        (["{{ event }}"], ["event.data.score"], True),
        (
            ["{{ rule }}"],
            body_names(
                "body.data.rows[].rules[].cid", ["row in body.data.rows", "rule in row.rules"]
            ),
            True,
        ),
        (
            ["{{ row.identifier }}"],
            body_names(
                "body.data.rows[].rules[].cid", ["row in body.data.rows", "rule in row.rules"]
            ),
            False,
        ),
        (
            ["{{ row.identifier }}"],
            body_names("body.data.rows[].identifier", ["row in body.data.rows"]),
            True,
        ),
    ],
)
def test_who_reads_a_path(texts: list[str], names: list[str], found: bool) -> None:
    assert reads(texts, names) is found


def test_event_names() -> None:
    assert event_names("data.items[].sku") == ["event.data.items"]


# -- the watch, on every engine

HOOKS = [
    {
        "name": "Scores to Zapier",
        "events": ["shop.*"],
        "url": "https://example.com/a",
        "body": {"score": "{{ event.data.score }}"},
    },
    {
        "name": "Emails to CRM",
        "events": ["shop.*"],
        "url": "https://example.com/b",
        "body": {"email": "{{ event.data.user.email }}"},
    },
    {
        "name": "Other provider",
        "events": ["other.*"],
        "url": "https://example.com/c",
        "body": {"score": "{{ event.data.score }}"},
    },
]


def shop_watch(store: Store, now: list[float]) -> ShapeWatch:
    connectors = load_connectors([SHIPPED_DIR])
    relay = Relay("shop", connectors["generic"], "t" * 16, "")
    live = LiveConfig(build_hooks(HOOKS, "cfg"), {relay.token: relay})
    return ShapeWatch(store, live, clock=lambda: now[0])


def send(store: Store, watch: ShapeWatch, n: str, body: dict[str, Any]) -> None:
    record = make_request(f"req_{n}", relay="shop", body=json.dumps(body).encode())
    event = Event(
        id=f"evt_{n}",
        source="shop",
        type="shop.order.paid",
        subject=None,
        time="2026-12-03T14:00:00.000Z",
        data=body,
        relay="shop",
    )
    run(store.ingest(record, [event]))
    watch.note(record, [event])


def test_a_provider_that_adds_drops_and_retypes_fields_opens_exactly_those_problems(
    store: Store,
) -> None:
    now = [NOW]
    watch = shop_watch(store, now)
    for n in range(LEARN):
        send(store, watch, f"base{n}", BASE)
    assert run(watch.drain()) == LEARN
    assert run(store.list_problems()) == []

    changed = {"user": {"email": 17}, "items": BASE["items"], "coupon": "X1"}  # no score
    send(store, watch, "changed", changed)
    run(watch.drain())
    problems = {p.signature: p for p in run(store.list_problems(relay="shop"))}
    assert sorted(problems) == [
        "request shape: body.coupon added",
        "request shape: body.score missing",
        "request shape: body.user.email retyped",
        "shop.order.paid shape: data.coupon added",
        "shop.order.paid shape: data.score missing",
        "shop.order.paid shape: data.user.email retyped",
    ]
    assert all(
        p.request == "req_changed" and p.relay == "shop" and p.hook == "" for p in problems.values()
    )
    assert problems["shop.order.paid shape: data.score missing"].error == (
        "`data.score`, always there before, is missing in 1 of the last 20 payloads, in "
        "shop.order.paid events; read by hook 'Scores to Zapier'"
    )
    assert problems["shop.order.paid shape: data.user.email retyped"].error == (
        "`data.user.email` is now a number in 1 of the last 20 payloads (was a text), in "
        "shop.order.paid events; read by hook 'Emails to CRM'"
    )
    assert problems["shop.order.paid shape: data.coupon added"].error.endswith(  # type: ignore[union-attr]
        "; nothing reads it"
    )
    # the generic connector passes the whole body on as the event's data
    assert problems["request shape: body.score missing"].error == (
        "`body.score`, always there before, is missing in 1 of the last 20 payloads, in the "
        "request body; read by connector 'generic' (one event per request)"
    )

    # More of the same: no new problem, the counts follow at the next flush.
    for n in range(3):
        send(store, watch, f"more{n}", changed)
    run(watch.drain())
    now[0] += 10
    run(watch.flush())
    again = {p.signature: p for p in run(store.list_problems(relay="shop"))}
    assert sorted(again) == sorted(problems)
    assert again["shop.order.paid shape: data.user.email retyped"].error.startswith(  # type: ignore[union-attr]
        "`data.user.email` is now a number in 4 of the last 20 payloads"
    )

    # A restarted watch reads the saved shapes: the known change reports nothing again.
    fresh = shop_watch(store, now)
    send(store, fresh, "after", changed)
    assert run(fresh.drain()) == 1
    assert len(run(store.list_problems(relay="shop"))) == len(problems)
    shapes = run(store.get_shapes("shop"))
    assert sorted(shapes) == ["", "shop.order.paid"]
    assert json.loads(shapes["shop.order.paid"])["payloads"] == LEARN + 4
