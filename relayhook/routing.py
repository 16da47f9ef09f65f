"""Routing: which hooks get which events. Pure; runs at ingest, inside the same transaction.

One delivery per (event, hook whose patterns and relays match); a hook that is inactive gets its
deliveries `paused`, so they drain when it is active again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from relayhook.events import Event
from relayhook.hooks import Hook
from relayhook.records import NewDelivery


def route(
    events: Sequence[Event],
    hooks: Iterable[Hook],
    *,
    active: Mapping[str, bool],
    now: float,
    new_id: Callable[[], str],
) -> list[NewDelivery]:
    """The deliveries for `events`; `active` says per hook name whether it is active now."""
    deliveries: list[NewDelivery] = []
    hooks = tuple(hooks)
    for event in events:
        for hook in hooks:
            if hook.matches(event.type, event.relay):
                is_active = active.get(hook.name, hook.active)
                deliveries.append(NewDelivery(new_id(), event.id, hook.name, event.subject,
                                              "pending" if is_active else "paused", now))
    return deliveries
