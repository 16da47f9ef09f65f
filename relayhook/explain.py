"""The read model of outcomes (why each hook did or did not fire for a request), for the API,
the console (through relayhook.web.readmodel) and `relayhook why` alike.

    items = await request_outcomes(parts, record)   # GET /api/requests/{id}/outcomes
    skips = await hook_skips(parts, "Quiz to Zapier")  # a hook's recent requests it did not take
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relayhook.assembly import Parts
from relayhook.core.events import format_time
from relayhook.core.outcomes import current_outcome, describe_outcome
from relayhook.store import DeliveryFilter, RequestRecord


def format_epoch(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(seconds, UTC))


MAX_OUTCOME_DELIVERIES = 5000  # a request's deliveries read to explain it
MAX_DEAD_LOOKUPS = 50  # dead deliveries whose last attempt is read for its error class
DEAD_KINDS = {"render": "render_error", "destination": "destination_refused"}


async def request_outcomes(parts: Parts, record: RequestRecord) -> list[dict[str, Any]]:
    """Every hook (now, or routed then) and its outcome for one request: what routing recorded
    at ingest (or Run again) beside what its deliveries say now."""
    store = parts.store
    routed = {o.hook: o for o in await store.request_outcomes(record.id)}
    counts: dict[str, dict[str, int]] = {}
    errors: dict[str, dict[str, str]] = {}
    found = await store.find_deliveries(
        DeliveryFilter(request_id=record.id), limit=MAX_OUTCOME_DELIVERIES
    )
    lookups = 0
    for delivery in found:
        status: str = delivery.status
        if status == "dead" and lookups < MAX_DEAD_LOOKUPS:
            lookups += 1
            status = await _dead_kind(parts, delivery.id)
        by_status = counts.setdefault(delivery.hook, {})
        by_status[status] = by_status.get(status, 0) + 1
        if delivery.last_error:
            errors.setdefault(delivery.hook, {}).setdefault(status, delivery.last_error)
        elif delivery.last_status is not None:
            errors.setdefault(delivery.hook, {}).setdefault(status, f"HTTP {delivery.last_status}")
    items = []
    for name in sorted(set(parts.live.hooks) | set(routed) | set(counts)):
        outcome = routed.get(name)
        kind, line = current_outcome(outcome, counts.get(name, {}), errors.get(name, {}))
        items.append(
            {
                "hook": name,
                "hook_exists": name in parts.live.hooks,
                "outcome": kind,
                "summary": line,
                "deliveries": counts.get(name, {}),
                "routed": None
                if outcome is None
                else {
                    "outcome": outcome.kind,
                    "events": outcome.counts,
                    "detail": outcome.detail,
                    "at": format_epoch(outcome.at),
                },
            }
        )
    return items


async def _dead_kind(parts: Parts, delivery_id: str) -> str:
    got = await parts.store.get_delivery(delivery_id)
    if got is None or not got[1]:
        return "dead"
    return DEAD_KINDS.get(got[1][-1].error_class or "", "dead")


async def hook_skips(parts: Parts, hook: str, limit: int = 20) -> list[dict[str, Any]]:
    """A hook's recent requests that made it no delivery, newest first, and why."""
    found = await parts.store.hook_outcomes(hook, exclude=("queued",), limit=limit)
    return [
        {
            "request_id": o.request_id,
            "outcome": o.kind,
            "events": o.counts,
            "summary": describe_outcome(o.kind, o.detail),
            "at": format_epoch(o.at),
            "types": list(o.detail.get("types") or []),
        }
        for o in found
    ]
