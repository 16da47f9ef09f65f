"""Mapping a kept request again (`relayhook remap`, the console's Map again)."""

from __future__ import annotations

from collections.abc import Mapping

from relayhook.assembly import new_uuid
from relayhook.events import parse_time
from relayhook.live import LiveConfig
from relayhook.mapping import InboundRequest, MappingError, map_request
from relayhook.relays import Relay
from relayhook.routing import route
from relayhook.store import RequestRecord, Store


async def remap_request(record: RequestRecord, by_name: Mapping[str, Relay], store: Store,
                        registry: LiveConfig, now: float) -> str:
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
        events = map_request(relay.connector, request, relay=relay.name, received_at=received,
                             new_id=new_uuid)
    except MappingError as exc:
        await store.remap(record.id, (), status="rejected", error=str(exc))
        return f"still rejected: {exc}"
    deliveries = route(events, registry.hooks.values(), active=registry.active(),
                       now=now, new_id=new_uuid)
    result = await store.remap(record.id, events, status="accepted", error=None,
                               deliveries=deliveries)
    return (f"accepted, {result.accepted} new events, {result.duplicates} already stored, "
            f"{result.deliveries} deliveries")
