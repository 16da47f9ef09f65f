"""What Save checks on the hook form beyond what loading refuses, as findings a person reads.

    findings = pattern_findings(hook, known_types) + render_findings(hook, event, values, ...)

A finding has a level (`error` blocks Save until the person presses "Save anyway"; `warning`
is shown), the form field it belongs to, a message in plain words, the nearest right thing when
there is one, and the raw text for "Details". The one diagnostics module `relayhook check` and
the API will share is meant to hand over findings of this shape; until then they are computed
here from `relayhook.core.lint` and a render of the hook against the preview's event.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from relayhook.core.diagnostics import pattern_can_match
from relayhook.core.events import Event
from relayhook.core.hooks import Hook, pattern_regex
from relayhook.core.outbound import render_request, should_deliver
from relayhook.core.outcomes import UNDEFINED, lookup
from relayhook.core.templating import RenderError

MAX_FIELDS = 300  # rows of the field picker
MAX_DEPTH = 8
LIST_ITEMS = 3  # a list shows its first items: data.rows.0, data.rows.1, ...
EVENT_REF = re.compile(r"\bevent\.([A-Za-z_]\w*(?:\.\w+)*)")
MISSING = re.compile(r"has no attribute '([^']*)'|'([^']*)' is undefined")
TOP_FIELDS = ("subject", "type", "source", "time", "id", "relay")


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "error" (blocks Save until "Save anyway") or "warning"
    field: str  # the id of the form field it belongs to
    message: str  # for a person
    nearest: str | None = None
    details: str = ""  # the raw text, shown under "Details"


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.level == "error"]


# --- the fields of an event, for the picker -------------------------------------------------


def event_fields(event: Event) -> list[tuple[str, str, int]]:
    """(path, value as shown, depth) for each field of the event a hook can read, in the
    order a person reads them: subject, type, ... then data's fields, nested ones indented."""
    cloudevent = event.to_cloudevent()
    rows: list[tuple[str, str, int]] = []
    for name in TOP_FIELDS:
        if name in cloudevent:
            rows.append((name, _shown(cloudevent[name]), 0))
    _walk(cloudevent.get("data"), "data", 0, rows)
    return rows[:MAX_FIELDS]


def _walk(value: Any, path: str, depth: int, rows: list[tuple[str, str, int]]) -> None:
    if len(rows) >= MAX_FIELDS:
        return
    if isinstance(value, dict) and depth < MAX_DEPTH:
        rows.append((path, "", depth))
        for key, item in value.items():
            if isinstance(key, str) and re.fullmatch(r"\w+", key):
                _walk(item, f"{path}.{key}", depth + 1, rows)
    elif isinstance(value, list) and value and depth < MAX_DEPTH:
        rows.append((path, f"{len(value)} item{'s' if len(value) != 1 else ''}", depth))
        for index, item in enumerate(value[:LIST_ITEMS]):
            _walk(item, f"{path}.{index}", depth + 1, rows)
    else:
        rows.append((path, _shown(value), depth))


def _shown(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value) if not isinstance(value, list | dict) else f"{len(value)} items"
    return text if len(text) <= 60 else text[:59] + "…"


def _paths(event: Event) -> list[str]:
    return [path for path, _, _ in event_fields(event)]


def resolves(event: Event, path: str) -> bool:
    """Whether `event.<path>` names something in the event."""
    return lookup(event.to_cloudevent(), path.split(".")) is not UNDEFINED


# --- event patterns --------------------------------------------------------------------------


def pattern_findings(
    hook: Hook, known_types: set[str], patterns_typed: Iterable[str]
) -> list[Finding]:
    """A pattern that matches none of the known event types (those the connectors emit as
    written or in their examples, and those of stored events): the hook would never fire.
    Stricter than `relayhook check`, which lets a templated type (`gamify.{{ ... }}`) excuse
    any pattern under its prefix: here the person may still "Save anyway"."""
    typed = set(patterns_typed)
    found = []
    for pattern in hook.spec.events:
        if pattern_can_match(pattern, known_types, set()):
            continue
        near = difflib.get_close_matches(pattern, sorted(known_types), n=1, cutoff=0.5)
        message = f"No event type matches {pattern!r}, so this hook would never send."
        if near:
            message += f" Did you mean {near[0]!r}?"
        found.append(
            Finding(
                "error",
                "patterns" if pattern in typed else "events",
                message,
                near[0] if near else None,
                f"event pattern {pattern!r}: {pattern_regex(pattern).pattern}",
            )
        )
    return found


# --- a render against the preview's event ----------------------------------------------------


def render_findings(
    hook: Hook, event: Event, values: Mapping[str, Any], secrets: Mapping[str, str], now: float
) -> list[Finding]:
    """The hook's condition and request rendered for the event; a field it reads that the
    event does not have is named with the nearest one."""
    try:
        if not should_deliver(hook, event, secrets):
            return [
                Finding(
                    "warning",
                    "when",
                    "The condition is false for the preview event: "
                    "this event would be filtered out (not sent).",
                )
            ]
        render_request(hook, event, delivery_id="preview", secrets=secrets, now=now)
    except RenderError as exc:
        return [_render_finding(exc, event, values)]
    except ValueError as exc:  # a URL the HTTP client's parser refuses (a backslash, ...)
        return [
            Finding(
                "warning",
                "url",
                "This address cannot be used: check it for stray characters such as a backslash.",
                None,
                str(exc),
            )
        ]
    return []


def _render_finding(exc: RenderError, event: Event, values: Mapping[str, Any]) -> Finding:
    field = form_field(exc.name, values)
    if MISSING.search(exc.message):
        for path in _references(field, values):
            if not resolves(event, path):
                near = difflib.get_close_matches(path, _paths(event), n=1, cutoff=0.6)
                message = f"No field {path!r} in this event."
                if near:
                    message += f" Did you mean {near[0]!r}?"
                return Finding("error", field, message, near[0] if near else None, str(exc))
        return Finding(
            "error", field, "This reads a field the preview event does not have.", None, str(exc)
        )
    return Finding(
        "error",
        field,
        f"The request cannot be made for the preview event: {_plain(exc.message)}.",
        None,
        str(exc),
    )


def _plain(message: str) -> str:
    text = message.split(":", 1)[0] if "sandbox" in message else message
    return text.rstrip(".")[:200]


def _references(field: str, values: Mapping[str, Any]) -> list[str]:
    """The event paths the form field reads, as typed (`{event.data.x}`, `{{ event.data.x }}`,
    or an Event field row's bare path)."""
    texts: list[str] = []
    row = re.fullmatch(r"(header|param|body)_value_(\d+)", field)
    if row:
        kind, index = row.group(1), int(row.group(2))
        rows = values["body_rows" if kind == "body" else kind]
        if index < len(rows):
            if rows[index].source == "event":
                return [rows[index].value.strip().removeprefix("event.")]
            texts.append(rows[index].value)
    elif field in values and isinstance(values[field], str):
        texts.append(values[field])
    return [match.group(1) for text in texts for match in EVENT_REF.finditer(text)]


def form_field(template: str, values: Mapping[str, Any]) -> str:
    """The form field a template (by its name: url, headers.X, body.email, when) came from."""
    head, _, rest = template.partition(".")
    if head in ("headers", "params"):
        kind = "header" if head == "headers" else "param"
        key = rest.lower()
        index = next((i for i, row in enumerate(values[kind]) if row.key.lower() == key), 0)
        return f"{kind}_value_{index}"
    if head == "body" and values.get("body_mode") == "rows":
        key = rest.split(".")[0]
        index = next((i for i, row in enumerate(values["body_rows"]) if row.key == key), 0)
        return f"body_value_{index}"
    if head == "body" and values.get("body_mode") == "default":
        return "preset"
    return head if head in ("url", "when", "body", "signing_secret") else "url"
