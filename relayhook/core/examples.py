"""The event to show a hook with: its newest stored event, else a connector's example.

Used by `relayhook render` / `send-test` and by the console's preview and Send test event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from relayhook.core.connectors import Connector
from relayhook.core.events import Event, parse_time
from relayhook.core.hooks import Hook, pattern_regex
from relayhook.core.mapping import InboundRequest, MappingError, map_request

if TYPE_CHECKING:
    from relayhook.store.base import HistoryStore

EXAMPLE_TIME = "2024-01-01T00:00:00Z"


async def newest_event(store: HistoryStore, hook: Hook) -> Event | None:
    """The hook's newest stored event: by type where its patterns are exact, else by paging
    back through the newest 20,000 events."""
    exact = [p for p in hook.spec.events if "*" not in p]
    if len(exact) == len(hook.spec.events):
        found = [
            e
            for p in exact
            for e in await store.list_events(type=p, limit=200)
            if hook.matches(e.type, e.relay)
        ]
        return max(found, key=lambda e: e.time, default=None)
    before: str | None = None
    for _ in range(40):  # bounded: 40 pages of 500
        page = await store.list_events(limit=500, before=before)
        match = next((e for e in page if hook.matches(e.type, e.relay)), None)
        if match is not None or len(page) < 500:
            return match
        before = page[-1].id
    return None


async def recent_events(store: HistoryStore, hook: Hook, limit: int) -> list[Event]:
    """The newest `limit` stored events the hook takes (by type and relay), newest first,
    looking back through at most the newest 20,000 events."""
    found: list[Event] = []
    before: str | None = None
    for _ in range(40):  # bounded: 40 pages of 500
        page = await store.list_events(limit=500, before=before)
        found += [e for e in page if hook.matches(e.type, e.relay)]
        if len(found) >= limit or len(page) < 500:
            break
        before = page[-1].id
    return found[:limit]


def example_events(connector: Connector, relay: str) -> list[Event]:
    """The events the connector's example requests map to, as received by `relay` (an example
    that does not map is passed over: `relayhook check` reports it)."""
    events: list[Event] = []
    for example in connector.examples():
        request = InboundRequest(example.method, example.query, example.headers, example.body)
        try:
            events += map_request(
                connector,
                request,
                relay=relay,
                received_at=parse_time(EXAMPLE_TIME),
                new_id=lambda: "example-event",
            )
        except MappingError:
            continue
    return events


def example_event(hook: Hook, sources: Iterable[tuple[Connector, str]]) -> Event | None:
    """The example event for a hook, from (connector, relay name) sources: for the hook's
    patterns in order, the first example event of the first source (of the hook's relays) whose
    type that pattern matches."""
    sources = [(c, r) for c, r in sources if not hook.spec.relays or r in hook.spec.relays]
    examples: dict[str, list[Event]] = {}
    for pattern in hook.spec.events:
        regex = pattern_regex(pattern)
        for connector, relay in sources:
            if relay not in examples:
                examples[relay] = example_events(connector, relay)
            for event in examples[relay]:
                if regex.fullmatch(event.type) and hook.matches(event.type, relay):
                    return event
    return None
