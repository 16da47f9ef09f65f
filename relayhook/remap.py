"""Mapping a kept request again (`relayhook remap`, the console's Map again), and routing it
again (Run again, after a hook was fixed). Called through relayhook.operations."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from relayhook.core.events import Event, parse_time
from relayhook.core.mapping import InboundRequest, MappingError, map_request
from relayhook.core.routing import route_explained
from relayhook.live import LiveConfig
from relayhook.relays import Relay
from relayhook.store import HookOutcome, NewDelivery, RequestRecord
from relayhook.store.base import RecordsStore

MAX_EVENT_PAGES = 1000  # x 500 events: more than any one request maps to


async def remap_request(
    record: RequestRecord,
    by_name: Mapping[str, Relay],
    store: RecordsStore,
    registry: LiveConfig,
    now: float,
    secrets: Mapping[str, str] | None,
    new_id: Callable[[], str],
) -> str:
    """Map a kept request again with its relay's connector now; what became of it, in words
    (`accepted, ...`, `still rejected: ...`, `skipped: ...`)."""
    if record.truncated:
        return "skipped: its body was cut at the size limit"
    relay = by_name.get(record.relay)
    if relay is None:
        return f"skipped: relay {record.relay!r} is no longer configured"
    request = InboundRequest(record.method, record.query, record.headers, record.body)
    received = parse_time(record.received_at)
    try:
        events = map_request(
            relay.connector, request, relay=relay.name, received_at=received, new_id=new_id
        )
    except MappingError as exc:
        _, outcomes = _route(replace(record, error=str(exc)), [], registry, now, secrets, new_id)
        await store.remap(record.id, (), status="rejected", error=str(exc), outcomes=outcomes)
        return f"still rejected: {exc}"
    deliveries, outcomes = _route(record, events, registry, now, secrets, new_id)
    result = await store.remap(
        record.id, events, status="accepted", error=None, deliveries=deliveries, outcomes=outcomes
    )
    return (
        f"accepted, {result.accepted} new events, {result.duplicates} already stored, "
        f"{result.deliveries} deliveries"
    )


async def run_again(
    record: RequestRecord,
    by_name: Mapping[str, Relay],
    store: RecordsStore,
    registry: LiveConfig,
    now: float,
    secrets: Mapping[str, str] | None,
    new_id: Callable[[], str],
) -> str:
    """Route a kept request again with the hooks as they are now: the deliveries a fix allows
    are created (never a second one per event x hook), those the dispatcher skipped are due
    again, and its outcomes are recorded anew. A rejected request is mapped again first."""
    if record.status == "rejected":
        return await remap_request(record, by_name, store, registry, now, secrets, new_id)
    events = await request_events(store, record.id)
    deliveries, outcomes = _route(record, events, registry, now, secrets, new_id)
    created, requeued = await store.rerun(record.id, deliveries, outcomes, now=now)
    return f"ran again: {created} new deliveries, {requeued} skipped deliveries due again"


async def request_events(store: RecordsStore, request_id: str) -> list[Event]:
    """Every event stored for the request, oldest first."""
    events: list[Event] = []
    before: str | None = None
    for _ in range(MAX_EVENT_PAGES):
        page = await store.list_events(request_id=request_id, limit=500, before=before)
        events.extend(page)
        if len(page) < 500:
            break
        before = page[-1].id
    return events[::-1]


def _route(
    record: RequestRecord,
    events: list[Event],
    registry: LiveConfig,
    now: float,
    secrets: Mapping[str, str] | None,
    new_id: Callable[[], str],
) -> tuple[list[NewDelivery], list[HookOutcome]]:
    return route_explained(
        record,
        events,
        registry.hooks.values(),
        active=registry.active(),
        now=now,
        new_id=new_id,
        secrets=secrets or {},
    )
