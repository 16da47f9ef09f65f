"""Routing: one delivery per (event, matching hook), made at ingest. Pure."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from relayhook.core.events import Event
from relayhook.core.hooks import Hook, build_hooks
from relayhook.core.routing import route
from relayhook.store import NewDelivery

NOW = 1_714_564_800.0


def event(
    id: str,
    type: str = "gmetri.rule.triggered",
    relay: str = "prod",
    subject: str | None = "amit@gmetri.com",
) -> Event:
    return Event(
        id=id,
        source="https://gmetri.com",
        type=type,
        subject=subject,
        time="2024-05-01T12:00:00.000Z",
        data={},
        relay=relay,
    )


def hooks(*specs: dict[str, Any]) -> list[Hook]:
    raw = [{"url": "https://r.example/", **spec} for spec in specs]
    return list(build_hooks(raw, "cfg").values())


def counter(prefix: str = "d") -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def routed(
    events: Sequence[Event], hook_list: Sequence[Hook], active: dict[str, bool] | None = None
) -> list[NewDelivery]:
    return route(events, hook_list, active=active or {}, now=NOW, new_id=counter())


RULES = {"name": "rules", "events": ["gmetri.rule.*"]}
ALL = {"name": "all", "events": ["*"]}
PROD_ONLY = {"name": "prod-only", "events": ["*"], "relays": ["prod"]}
SESSIONS = {"name": "sessions", "events": ["synthesisvr.session.*"]}


@pytest.mark.parametrize(
    ("events", "specs", "expected"),
    [
        pytest.param([event("e1")], [RULES], [("e1", "rules")], id="one event, one hook"),
        pytest.param(
            [event("e1")],
            [RULES, ALL, SESSIONS],
            [("e1", "rules"), ("e1", "all")],
            id="every matching hook",
        ),
        pytest.param(
            [event("e1"), event("e2", "synthesisvr.session.created")],
            [RULES, SESSIONS],
            [("e1", "rules"), ("e2", "sessions")],
            id="each event its hooks",
        ),
        pytest.param(
            [event("e1", "gmetri.variables.changed")], [RULES, SESSIONS], [], id="no matching type"
        ),
        pytest.param([event("e1", relay="staging")], [PROD_ONLY], [], id="not a listed relay"),
        pytest.param(
            [event("e1", relay="prod"), event("e2", relay="staging")],
            [PROD_ONLY, ALL],
            [("e1", "prod-only"), ("e1", "all"), ("e2", "all")],
            id="relay filter per hook",
        ),
        pytest.param([], [RULES, ALL], [], id="no events"),
        pytest.param([event("e1")], [], [], id="no hooks"),
    ],
)
def test_deliveries_per_event_and_matching_hook(
    events: list[Event], specs: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    deliveries = routed(events, hooks(*specs))
    assert [(d.event_id, d.hook) for d in deliveries] == expected


def test_a_delivery_holds_its_id_event_subject_status_and_due_time() -> None:
    deliveries = route(
        [event("e1", subject="amit@gmetri.com"), event("e2", subject=None)],
        hooks(RULES, ALL),
        active={},
        now=NOW,
        new_id=counter("dlv_"),
    )
    assert deliveries == [
        NewDelivery("dlv_1", "e1", "rules", "amit@gmetri.com", "pending", NOW),
        NewDelivery("dlv_2", "e1", "all", "amit@gmetri.com", "pending", NOW),
        NewDelivery("dlv_3", "e2", "rules", None, "pending", NOW),
        NewDelivery("dlv_4", "e2", "all", None, "pending", NOW),
    ]


def test_ids_come_from_new_id_once_per_delivery() -> None:
    calls: list[int] = []

    def new_id() -> str:
        calls.append(1)
        return f"id-{len(calls)}"

    deliveries = route(
        [event("e1"), event("e2", "other.type")],
        hooks(RULES, ALL),
        active={},
        now=NOW,
        new_id=new_id,
    )
    assert [d.id for d in deliveries] == ["id-1", "id-2", "id-3"]
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("spec_active", "active", "expected"),
    [
        pytest.param(True, {}, "pending", id="active in the config"),
        pytest.param(False, {}, "paused", id="inactive in the config"),
        pytest.param(True, {"rules": False}, "paused", id="disabled at run time (410, API)"),
        pytest.param(False, {"rules": True}, "pending", id="the run-time state wins"),
        pytest.param(True, {"other": False}, "pending", id="another hook's state"),
    ],
)
def test_an_inactive_hook_gets_paused_deliveries(
    spec_active: bool, active: dict[str, bool], expected: str
) -> None:
    deliveries = routed([event("e1"), event("e2")], hooks({**RULES, "active": spec_active}), active)
    assert [d.status for d in deliveries] == [expected, expected]


def test_paused_and_pending_side_by_side() -> None:
    deliveries = routed([event("e1")], hooks(RULES, {**ALL, "active": False}))
    assert [(d.hook, d.status) for d in deliveries] == [("rules", "pending"), ("all", "paused")]


def test_due_at_is_now_for_every_delivery() -> None:
    deliveries = route(
        [event(f"e{i}") for i in range(5)],
        hooks(RULES, ALL),
        active={},
        now=123.5,
        new_id=counter(),
    )
    assert {d.due_at for d in deliveries} == {123.5}


def test_route_takes_any_iterable_of_hooks() -> None:
    hook_list = hooks(RULES, ALL)
    deliveries = route(
        [event("e1"), event("e2")], iter(hook_list), active={}, now=NOW, new_id=counter()
    )
    assert len(deliveries) == 4  # a generator is read once, used for every event
