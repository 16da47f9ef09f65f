"""Why a hook did or did not fire for a request: the outcome of routing, kept per request x hook.

    outcomes = Tally(request_id, at)           # routing adds to it, one event x hook at a time
    outcomes.add(hook, "condition_false", {"values": {"event.data.score": 3}, ...})
    outcomes.done(hook_names)                  # -> [HookOutcome], one per hook

Pure: no I/O. `condition_values` reads, from a hook's context, the dotted names its `when`
looks up (found in the template's syntax tree once per condition), so "condition false" can
say with which values.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes

from relayhook.core.records import OUTCOME_KINDS, HookOutcome

MAX_SHOWN_VALUE = 200  # characters of one value read by a condition, as kept
MAX_TYPES = 10  # event types listed for "type not subscribed"
UNDEFINED = "(undefined)"

SUMMARIES = {
    "queued": "queued for delivery",
    "paused": "hook inactive: its deliveries wait (paused)",
    "condition_false": "condition false",
    "type_not_subscribed": "event type not subscribed",
    "relay_not_subscribed": "relay not subscribed",
    "no_event": "no event mapped",
    "not_evaluated": "not evaluated: the hook did not exist when the request came (Run again)",
    "delivered": "delivered",
    "failed": "failing: retried",
    "dead": "failed: gave up",
    "render_error": "render error",
    "destination_refused": "destination refused",
    "cancelled": "cancelled",
}


class Tally:
    """The outcomes of one request, counted per hook and kind; the first example of each kind
    is kept as its detail."""

    def __init__(self, request_id: str, at: float) -> None:
        self.request_id = request_id
        self.at = at
        self._counts: dict[str, dict[str, int]] = {}
        self._details: dict[str, dict[str, Any]] = {}

    def add(self, hook: str, kind: str, detail: Mapping[str, Any] | None = None) -> None:
        counts = self._counts.setdefault(hook, {})
        counts[kind] = counts.get(kind, 0) + 1
        if detail is not None:
            details = self._details.setdefault(hook, {})
            if kind not in details:
                details[kind] = dict(detail)

    def note_type(self, hook: str, event_type: str, subscribed: list[str]) -> None:
        """An event of `event_type` the hook does not subscribe to: counted, its type listed."""
        self.add(hook, "type_not_subscribed", {"types": [], "subscribed": subscribed})
        types: list[str] = self._details[hook]["type_not_subscribed"]["types"]
        if event_type not in types and len(types) < MAX_TYPES:
            types.append(event_type)

    def done(self, hooks: Iterable[str]) -> list[HookOutcome]:
        """One outcome per hook (those never added to: no events at all, `no_event`)."""
        return [
            HookOutcome(
                self.request_id,
                name,
                primary_kind(self._counts.get(name, {})),
                self._counts.get(name, {}) or {"no_event": 1},
                self._details.get(name, {}),
                self.at,
            )
            for name in hooks
        ]


def primary_kind(counts: Mapping[str, int]) -> str:
    """The kind a request x hook is listed under: the first of OUTCOME_KINDS it counts."""
    return next((kind for kind in OUTCOME_KINDS if counts.get(kind)), "no_event")


@functools.lru_cache(maxsize=1024)
def condition_names(source: str) -> tuple[str, ...]:
    """The dotted names a condition looks up, longest first: `event.data.score > 3 and
    event.subject` -> ("event.data.score", "event.subject"). Subscripts with a constant string
    count as a dot (`event.data['x']` -> event.data.x)."""
    try:
        tree = jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError:
        return ()
    found: list[str] = []
    inner: set[int] = set()  # nodes that are part of a longer chain
    for chain in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(chain, nodes.Getattr | nodes.Getitem)
        inner.add(id(chain.node))
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in inner:
            continue
        name = _dotted(node)
        if name is not None and name not in found:
            found.append(name)
    return tuple(found)


def _dotted(node: nodes.Node) -> str | None:
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return ".".join(reversed(parts)) if node.ctx == "load" else None
        else:
            return None


def condition_values(source: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """What each name the condition looks up holds in `context` (`(undefined)` when missing);
    `secrets.*` never shown. Long values are cut."""
    values: dict[str, Any] = {}
    for name in condition_names(source):
        head = name.split(".", 1)[0]
        if head == "secrets":
            values[name] = "[redacted]"
            continue
        if head not in context:  # a loop variable or a filter's own name
            continue
        values[name] = _shown(lookup(context, name.split(".")))
    return values


def lookup(value: Any, path: list[str]) -> Any:
    """The value at a dotted path (list items by index), or UNDEFINED."""
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return UNDEFINED
    return value


def _shown(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_SHOWN_VALUE else text[:MAX_SHOWN_VALUE] + "..."


def describe_outcome(kind: str, detail: Mapping[str, Any]) -> str:
    """One line for people: `condition false: event.data.score = 3`."""
    text = SUMMARIES.get(kind, kind)
    example = detail.get(kind) or {}
    if kind == "condition_false" and example.get("values"):
        shown = ", ".join(f"{name} = {value!r}" for name, value in example["values"].items())
        return f"{text}: {shown}"
    if kind == "type_not_subscribed" and example.get("types"):
        return (
            f"{text}: {', '.join(example['types'])} (it subscribes to "
            f"{', '.join(example.get('subscribed', []))})"
        )
    if kind == "relay_not_subscribed" and example.get("relay"):
        return f"{text}: {example['relay']} (it takes {', '.join(example.get('relays', []))})"
    if kind in ("no_event", "paused") and example.get("error"):
        return f"{text}: {example['error']}"
    return text


# What the deliveries a request made say now, worst first: the headline of a request x hook.
_BY_DELIVERIES = (
    ("destination_refused", ("destination_refused",)),
    ("render_error", ("render_error",)),
    ("dead", ("dead",)),
    ("failed", ("failed",)),
    ("paused", ("paused",)),
    ("condition_false", ("skipped",)),
    ("queued", ("pending", "claimed")),
    ("cancelled", ("cancelled",)),
    ("delivered", ("succeeded",)),
)


def current_outcome(
    routed: HookOutcome | None, deliveries: Mapping[str, int], errors: Mapping[str, str]
) -> tuple[str, str]:
    """(kind, one line) for a request x hook now: from its deliveries when it has any (counted
    by status, `dead` split into `render_error` / `destination_refused` by the caller), else
    from what routing recorded. `errors`: an example error per delivery kind."""
    for kind, statuses in _BY_DELIVERIES:
        if any(deliveries.get(status) for status in statuses):
            error = errors.get(kind) or errors.get(statuses[0])
            line = SUMMARIES[kind] if kind != "condition_false" else "skipped at delivery"
            line = f"{line}: {error}" if error else line
            return kind, line + _also(routed)
    if routed is None:
        return "not_evaluated", SUMMARIES["not_evaluated"]
    return routed.kind, describe_outcome(routed.kind, routed.detail)


def _also(routed: HookOutcome | None) -> str:
    """What routing kept from delivery, beside the deliveries it made: `; condition false for
    3 events: ...`."""
    if routed is None:
        return ""
    skipped = [(kind, n) for kind, n in routed.counts.items() if kind not in ("queued", "paused")]
    return "".join(f"; {describe_outcome(kind, routed.detail)} ({n} events)" for kind, n in skipped)


def names_read(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Every dotted name a hook's templates look up (url, headers, params, body, when...), from
    the hook as written: what "the fields the hook's templates read" marks on a delivery."""
    from relayhook.core.hooks import expand_placeholders  # hooks imports nothing of this module

    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and "{" in value:
            for name in condition_names(expand_placeholders(value)):
                if name not in found:
                    found.append(name)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(dict(spec))
    return tuple(found)


def marked_fields(
    cloudevent: Mapping[str, Any], read: Iterable[str]
) -> list[tuple[str, Any, bool]]:
    """The event flattened to (`event.data.score`, value, read by a template?) rows: a row is
    marked when a template reads it, a field inside it, or an object around it."""
    names = tuple(read)
    rows: list[tuple[str, Any, bool]] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{path}.{key}", item)
            return
        marked = any(
            path == n or path.startswith(n + ".") or n.startswith(path + ".") for n in names
        )
        rows.append((path, value, marked))

    for key, value in cloudevent.items():
        walk(f"event.{key}", value)
    return rows
