"""Saved samples: a stored request or event pinned under a name (relayhook.core.records.Sample), and
dry runs of a hook's condition over real events ("would have matched 12 of the last 50").

Pure: the store keeps a sample as the JSON `sample_payload` gives, and reads it back with
`sample_from_payload`.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relayhook.core.events import Event
from relayhook.core.hooks import Hook
from relayhook.core.outbound import hook_context
from relayhook.core.records import RequestRecord, Sample, SampleKind
from relayhook.core.templating import (
    RenderError,
    TemplateError,
    compile_template,
    is_single_expression,
)
from relayhook.errors import SpecError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}")
MAX_DRY_RUN = 1000  # events a dry run reads at most


def check_sample_name(name: str) -> str:
    """The name, stripped; ValueError saying what a name may hold."""
    name = name.strip()
    if not NAME.fullmatch(name):
        raise ValueError(
            "a sample's name is 1 to 80 letters, digits, spaces, '.', '_' or '-',"
            f" starting with a letter or digit, not {name!r}"
        )
    return name


def pin_request(name: str, record: RequestRecord, events: Sequence[Event], at: float) -> Sample:
    """A sample of a stored request and the events it mapped to."""
    return Sample(check_sample_name(name), "request", record.id, tuple(events), record, at)


def pin_event(name: str, event: Event, at: float) -> Sample:
    return Sample(check_sample_name(name), "event", event.id, (event,), None, at)


def event_json(event: Event) -> dict[str, Any]:
    return {**event.to_cloudevent(), "request_id": event.request_id}


def event_of_json(data: Mapping[str, Any]) -> Event:
    return Event(
        id=data["id"],
        source=data["source"],
        type=data["type"],
        subject=data.get("subject"),
        time=data["time"],
        data=data.get("data"),
        relay=data["relay"],
        request_id=data.get("request_id", ""),
    )


def sample_payload(sample: Sample) -> dict[str, Any]:
    """What the store keeps of a sample besides its name, kind, source id and time."""
    payload: dict[str, Any] = {"events": [event_json(e) for e in sample.events]}
    if sample.request is not None:
        r = sample.request
        payload["request"] = {
            "id": r.id,
            "relay": r.relay,
            "received_at": r.received_at,
            "method": r.method,
            "query": r.query,
            "headers": [list(h) for h in r.headers],
            "body": base64.b64encode(r.body).decode("ascii"),
            "status": r.status,
            "error": r.error,
            "truncated": r.truncated,
            "test": r.test,
        }
    return payload


def sample_from_payload(
    name: str, kind: SampleKind, source_id: str, payload: Mapping[str, Any], saved_at: float
) -> Sample:
    events = tuple(event_of_json(e) for e in payload.get("events", ()))
    request = None
    if (r := payload.get("request")) is not None:
        request = RequestRecord(
            id=r["id"],
            relay=r["relay"],
            received_at=r["received_at"],
            method=r["method"],
            query=r["query"],
            headers=tuple((h[0], h[1]) for h in r["headers"]),
            body=base64.b64decode(r["body"]),
            status=r["status"],
            error=r["error"],
            truncated=r["truncated"],
            event_ids=tuple(e.id for e in events),
            test=r["test"],
        )
    return Sample(name, kind, source_id, events, request, saved_at)


def sample_event(sample: Sample, hook: Hook | None = None) -> Event | None:
    """The sample's event to show or send through `hook`: the first its patterns and relays
    take, else the first at all (a sample is chosen on purpose), None for a sample of a
    request that mapped to no event."""
    if hook is not None:
        for event in sample.events:
            if hook.matches(event.type, event.relay):
                return event
    return sample.events[0] if sample.events else None


@dataclass(frozen=True, slots=True)
class DryRun:
    """A hook's condition over `evaluated` real events it takes: how many it held for, how
    many it failed to render on (the dispatcher would record a render error), and examples."""

    evaluated: int = 0
    matched: int = 0
    failed: int = 0
    matched_ids: list[str] = field(default_factory=list)
    unmatched_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.evaluated:
            return "No stored event this hook takes: nothing to try the condition on."
        text = f"This condition would have matched {self.matched} of the last {self.evaluated}"
        text += " events" if self.evaluated != 1 else " event"
        if self.failed:
            text += f" ({self.failed} failed to render)"
        return text + "."


def with_condition(hook: Hook, when: str | None) -> Hook:
    """The hook with `when` as its condition (None or "": none), to dry-run a condition not
    saved yet. SpecError at `when` for one that does not compile."""
    if not when:
        return dataclasses.replace(hook, when=None)
    if not is_single_expression(when):
        raise SpecError(("when",), "a condition is one {{ expression }}")
    try:
        return dataclasses.replace(hook, when=compile_template(when, "when"))
    except TemplateError as exc:
        raise SpecError(("when",), exc.message) from exc


def dry_run(
    hook: Hook, events: Sequence[Event], secrets: Mapping[str, str], examples: int = 5
) -> DryRun:
    """Evaluate the hook's `when` on those of `events` it takes (by type and relay), as routing
    would; without a condition every one matches."""
    taken = [e for e in events if hook.matches(e.type, e.relay)]
    matched: list[str] = []
    unmatched: list[str] = []
    errors: list[str] = []
    for event in taken:
        try:
            holds = hook.when is None or bool(hook.when.render(hook_context(hook, event, secrets)))
        except RenderError as exc:
            errors.append(f"event {event.id}: {exc}")
            continue
        (matched if holds else unmatched).append(event.id)
    return DryRun(
        len(taken),
        len(matched),
        len(errors),
        matched[:examples],
        unmatched[:examples],
        errors[:examples],
    )
