"""What a changed connector or hook would change, over kept requests: pure.

A connector's diff maps each request with the current connector and with the changed one; a
hook's diff routes each request's stored events through the current hook and the changed one.
Events are matched by type, subject and order among those (their ids are random), compared
field by field; deliveries are (event, hook) pairs that match the hook and pass its `when`;
bodies are rendered as the dispatcher would send them, secrets written over.

    found = diff_request(record, before=Side(current, hooks), after=Side(changed, hooks))
    found.empty   # nothing would change for this request
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relayhook.core.connectors import Connector
from relayhook.core.events import Event, parse_time
from relayhook.core.hooks import Hook
from relayhook.core.mapping import InboundRequest, MappingError, map_request
from relayhook.core.outbound import redactor, render_request, should_deliver
from relayhook.core.records import RequestRecord
from relayhook.core.templating import RenderError

MAX_BODY = 4000  # characters of a body shown


@dataclass(frozen=True, slots=True)
class Side:
    """One version: the connector that maps the requests (None: take `events` as stored) and
    the hooks that route them."""

    connector: Connector | None
    hooks: Sequence[Hook]


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class BodyChange:
    hook: str
    event: str  # the event's key (type, subject, n)
    before: str | None  # None: no delivery on this side
    after: str | None


@dataclass
class RequestDiff:
    request_id: str
    before_error: str | None = None  # the request is rejected on that side, with this reason
    after_error: str | None = None
    added: list[Event] = field(default_factory=list)
    removed: list[Event] = field(default_factory=list)
    changed: list[tuple[Event, Event, list[FieldChange]]] = field(default_factory=list)
    deliveries_added: list[tuple[str, str]] = field(default_factory=list)  # (event key, hook)
    deliveries_removed: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[BodyChange] = field(default_factory=list)
    new_keys: list[str] = field(default_factory=list)  # of the events added or changed

    @property
    def empty(self) -> bool:
        return (
            self.before_error == self.after_error
            and not self.added
            and not self.removed
            and not self.changed
            and not self.deliveries_added
            and not self.deliveries_removed
            and not self.bodies
        )


def event_key(event: Event, n: int) -> str:
    return f"{event.type} {event.subject or '-'} #{n}"


def keyed(events: Sequence[Event]) -> dict[str, Event]:
    """Events by key: type, subject and their order among those of the same type and subject."""
    seen: dict[tuple[str, str | None], int] = {}
    found = {}
    for event in events:
        n = seen.get((event.type, event.subject), 0)
        seen[(event.type, event.subject)] = n + 1
        found[event_key(event, n)] = event
    return found


def flatten(value: Any, path: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            flatten(item, f"{path}.{key}", out)
    elif isinstance(value, list) and value:
        for n, item in enumerate(value):
            flatten(item, f"{path}[{n}]", out)
    else:
        out[path] = value
    return out


def field_changes(before: Event, after: Event) -> list[FieldChange]:
    """What differs between two versions of an event: source, time, data field by field."""

    def fields(event: Event) -> dict[str, Any]:
        return flatten(event.data, "data", {"source": event.source, "time": event.time})

    old, new = fields(before), fields(after)
    return [
        FieldChange(path, old.get(path), new.get(path))
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]


def map_side(
    connector: Connector, record: RequestRecord, new_id: Callable[[], str] | None = None
) -> tuple[list[Event], str | None]:
    """The events one connector makes of a kept request (ids made up unless `new_id` is given:
    keys compare them), or the reason it rejects it."""
    counter = iter(range(1_000_000))
    request = InboundRequest(record.method, record.query, record.headers, record.body)
    try:
        return map_request(
            connector,
            request,
            relay=record.relay,
            received_at=parse_time(record.received_at),
            new_id=new_id or (lambda: f"{record.id}/{next(counter)}"),
        ), None
    except MappingError as exc:
        return [], str(exc)


def deliveries(
    events: Mapping[str, Event], hooks: Sequence[Hook], secrets: Mapping[str, str]
) -> dict[tuple[str, str], str]:
    """(event key, hook) → the body the hook would send (or why it cannot be rendered)."""
    redact = redactor(secrets)
    found = {}
    for key, event in events.items():
        for hook in hooks:
            if not hook.matches(event.type, event.relay):
                continue
            try:
                if not should_deliver(hook, event, secrets):
                    continue
                body = render_request(
                    hook, event, delivery_id="diff", secrets=secrets, now=0.0
                ).body.decode("utf-8", errors="replace")
            except RenderError as exc:
                body = f"(cannot be rendered: {exc})"
            found[(key, hook.name)] = redact(body)[:MAX_BODY]
    return found


def diff_request(
    record: RequestRecord,
    stored: Sequence[Event],
    *,
    before: Side,
    after: Side,
    secrets: Mapping[str, str],
) -> RequestDiff:
    """What would change for one kept request from `before` to `after`."""
    found = RequestDiff(record.id)
    old_events, found.before_error = (
        map_side(before.connector, record) if before.connector else (list(stored), None)
    )
    new_events, found.after_error = (
        map_side(after.connector, record) if after.connector else (list(stored), None)
    )
    old, new = keyed(old_events), keyed(new_events)
    found.added = [new[k] for k in new if k not in old]
    found.removed = [old[k] for k in old if k not in new]
    found.new_keys = [k for k in new if k not in old]
    for key in new:
        if key in old and (changes := field_changes(old[key], new[key])):
            found.changed.append((old[key], new[key], changes))
            found.new_keys.append(key)
    sent_before = deliveries(old, before.hooks, secrets)
    sent_after = deliveries(new, after.hooks, secrets)
    found.deliveries_added = sorted(k for k in sent_after if k not in sent_before)
    found.deliveries_removed = sorted(k for k in sent_before if k not in sent_after)
    for pair in sorted(sent_before.keys() | sent_after.keys()):
        body_before, body_after = sent_before.get(pair), sent_after.get(pair)
        if body_before != body_after:
            found.bodies.append(BodyChange(pair[1], pair[0], body_before, body_after))
    return found


@dataclass
class Diff:
    """The diff over `compared` kept requests: those that would change, newest first."""

    kind: str  # "connector" or "hook"
    name: str
    compared: int
    requests: list[RequestDiff]

    def totals(self) -> dict[str, int]:
        def count(attr: str) -> int:
            return sum(len(getattr(r, attr)) for r in self.requests)

        return {
            "requests_compared": self.compared,
            "requests_changed": len(self.requests),
            "events_added": count("added"),
            "events_removed": count("removed"),
            "events_changed": count("changed"),
            "now_rejected": sum(1 for r in self.requests if r.after_error and not r.before_error),
            "now_accepted": sum(1 for r in self.requests if r.before_error and not r.after_error),
            "deliveries_added": count("deliveries_added"),
            "deliveries_removed": count("deliveries_removed"),
            "bodies_changed": count("bodies"),
        }


def diff_json(diff: Diff) -> dict[str, Any]:
    """The diff as the API answers it and `relayhook diff --json` prints it."""

    def event(e: Event, n: int | None = None) -> dict[str, Any]:
        return {
            "type": e.type,
            "subject": e.subject,
            "source": e.source,
            "time": e.time,
            "data": e.data,
        }

    return {
        "kind": diff.kind,
        "name": diff.name,
        "totals": diff.totals(),
        "requests": [
            {
                "request": r.request_id,
                "before_error": r.before_error,
                "after_error": r.after_error,
                "events_added": [event(e) for e in r.added],
                "events_removed": [event(e) for e in r.removed],
                "events_changed": [
                    {
                        "type": a.type,
                        "subject": a.subject,
                        "fields": [
                            {"path": c.path, "before": c.before, "after": c.after} for c in changes
                        ],
                    }
                    for a, _, changes in r.changed
                ],
                "deliveries_added": [{"event": k, "hook": h} for k, h in r.deliveries_added],
                "deliveries_removed": [{"event": k, "hook": h} for k, h in r.deliveries_removed],
                "bodies": [
                    {"hook": b.hook, "event": b.event, "before": b.before, "after": b.after}
                    for b in r.bodies
                ],
            }
            for r in diff.requests
        ],
    }


def diff_text(diff: Diff, *, limit: int = 20) -> str:
    """The diff in words, for the CLI: the totals, then the first `limit` requests."""
    t = diff.totals()
    lines = [
        f"{diff.kind} {diff.name!r}: over the last {t['requests_compared']} kept requests, "
        f"{t['requests_changed']} would change",
        f"  events: {t['events_added']} added, {t['events_removed']} removed, "
        f"{t['events_changed']} changed",
        f"  requests: {t['now_rejected']} would now be rejected, {t['now_accepted']} accepted",
        f"  deliveries: {t['deliveries_added']} would now be made, "
        f"{t['deliveries_removed']} not; {t['bodies_changed']} bodies sent would differ",
    ]
    for r in diff.requests[:limit]:
        lines.append(f"request {r.request_id}:")
        if r.before_error != r.after_error:
            lines.append(
                f"  now rejected: {r.after_error}"
                if r.after_error
                else f"  now accepted (was rejected: {r.before_error})"
            )
        lines += [f"  + event {e.type} {e.subject or '-'}" for e in r.added]
        lines += [f"  - event {e.type} {e.subject or '-'}" for e in r.removed]
        for old, _, changes in r.changed:
            for c in changes:
                lines.append(
                    f"  ~ event {old.type} {old.subject or '-'}: {c.path}: "
                    f"{json.dumps(c.before)} -> {json.dumps(c.after)}"
                )
        lines += [f"  + delivery to hook {h!r} ({k})" for k, h in r.deliveries_added]
        lines += [f"  - delivery to hook {h!r} ({k})" for k, h in r.deliveries_removed]
        for b in r.bodies:
            if b.before is not None and b.after is not None:
                lines.append(f"  ~ body to hook {b.hook!r} ({b.event}): {b.before} -> {b.after}")
            elif b.after is not None:
                lines.append(f"  + body to hook {b.hook!r} ({b.event}): {b.after}")
    if len(diff.requests) > limit:
        lines.append(f"... and {len(diff.requests) - limit} more requests (--json shows all)")
    return "\n".join(lines) + "\n"
