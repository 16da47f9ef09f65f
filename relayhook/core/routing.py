"""Routing: which hooks get which events. Pure; runs at ingest, inside the same transaction.

One delivery per (event, hook whose patterns and relays match); a hook that is inactive gets its
deliveries `paused`, so they drain when it is active again. Given a `Tally`, routing also
evaluates each hook's `when` (a false one gets no delivery) and counts why each hook did or
did not get each event (relayhook.core.outcomes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from relayhook.core.events import Event
from relayhook.core.hooks import Hook
from relayhook.core.outbound import hook_context
from relayhook.core.outcomes import Tally, condition_values
from relayhook.core.records import HookOutcome, NewDelivery, RequestRecord
from relayhook.core.templating import RenderError


def route(
    events: Sequence[Event],
    hooks: Iterable[Hook],
    *,
    active: Mapping[str, bool],
    now: float,
    new_id: Callable[[], str],
    tally: Tally | None = None,
    secrets: Mapping[str, str] | None = None,
) -> list[NewDelivery]:
    """The deliveries for `events`; `active` says per hook name whether it is active now."""
    deliveries: list[NewDelivery] = []
    hooks = tuple(hooks)
    for event in events:
        cloudevent: dict[str, Any] | None = None
        for hook in hooks:
            if not hook.matches(event.type, event.relay):
                if tally is not None:
                    _note_unmatched(tally, hook, event)
                continue
            is_active = active.get(hook.name, hook.active)
            if tally is not None:
                if hook.when is not None:
                    cloudevent = cloudevent or event.to_cloudevent()
                    if not _condition_holds(tally, hook, event, cloudevent, secrets or {}):
                        continue
                tally.add(hook.name, "queued" if is_active else "paused")
            deliveries.append(
                NewDelivery(
                    new_id(),
                    event.id,
                    hook.name,
                    event.subject,
                    "pending" if is_active else "paused",
                    now,
                )
            )
    return deliveries


def route_explained(
    record: RequestRecord,
    events: Sequence[Event],
    hooks: Iterable[Hook],
    *,
    active: Mapping[str, bool],
    now: float,
    new_id: Callable[[], str],
    secrets: Mapping[str, str],
    at: float | None = None,
) -> tuple[list[NewDelivery], list[HookOutcome]]:
    """The deliveries for a request's events, conditions evaluated, and one outcome per hook
    (`at`: when it was decided, `now` unless given)."""
    hooks = tuple(hooks)
    tally = Tally(record.id, now if at is None else at)
    deliveries = route(
        events, hooks, active=active, now=now, new_id=new_id, tally=tally, secrets=secrets
    )
    if not events:
        error = record.error or "the connector mapped no event from it"
        for hook in hooks:
            if hook.spec.relays and record.relay not in hook.spec.relays:
                tally.add(
                    hook.name,
                    "relay_not_subscribed",
                    {"relay": record.relay, "relays": hook.spec.relays},
                )
            else:
                tally.add(hook.name, "no_event", {"error": error})
    return deliveries, tally.done(hook.name for hook in hooks)


def _note_unmatched(tally: Tally, hook: Hook, event: Event) -> None:
    relays = hook.spec.relays
    if relays and event.relay not in relays:
        tally.add(hook.name, "relay_not_subscribed", {"relay": event.relay, "relays": relays})
    else:
        tally.note_type(hook.name, event.type, hook.spec.events)


def _condition_holds(
    tally: Tally, hook: Hook, event: Event, cloudevent: dict[str, Any], secrets: Mapping[str, str]
) -> bool:
    """The hook's `when` for the event; False is counted with the values it read. A condition
    that fails to render is left to the dispatcher, which records the render error."""
    assert hook.when is not None
    context = hook_context(hook, event, secrets, cloudevent)
    try:
        holds = bool(hook.when.render(context))
    except RenderError:
        return True
    if not holds:
        tally.add(
            hook.name,
            "condition_false",
            {
                "event_id": event.id,
                "condition": hook.when.source,
                "values": condition_values(hook.when.source, context),
            },
        )
    return holds
