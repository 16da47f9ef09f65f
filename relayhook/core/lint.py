"""What `relayhook check` finds beyond what loading refuses: the quiet mistakes. Pure.

- a hook's event pattern that no loaded connector can emit (a typo: the hook never fires);
- a connector's example that does not map, a rule no example exercises, and a name looked up
  in a template that resolves on none of the examples (a typo hidden behind `default`).

    for key, message in example_findings(connector): print(f"{file}:{key}: {message}")
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from relayhook.core.connectors import Connector, emitted_types
from relayhook.core.hooks import Hook, pattern_regex
from relayhook.core.mapping import InboundRequest, MappingError, map_inbound
from relayhook.core.templating import recording_lookups

if TYPE_CHECKING:
    from relayhook.relays import Relay

Finding = tuple[str, str]  # (key path in the file, message)
EXAMPLE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


# --- hooks whose patterns match nothing -----------------------------------------------------


def pattern_can_match(pattern: str, literal: set[str], prefixes: set[str]) -> bool:
    """Whether a hook pattern (`*` matches anything) matches a literal type, or some type that
    starts with one of the prefixes (the rest is a template: it may be anything)."""
    parts = pattern.split("*")
    regex = pattern_regex(pattern)
    if any(regex.fullmatch(t) for t in literal):
        return True
    for prefix in prefixes:
        if len(parts) == 1 and pattern.startswith(prefix):
            return True
        if len(parts) > 1 and (prefix.startswith(parts[0]) or parts[0].startswith(prefix)):
            return True
    return False


def unmatched_patterns(
    hooks: Iterable[Hook], connectors: Mapping[str, Connector], relays: Iterable[Relay]
) -> list[tuple[int, int, str]]:
    """(hook index, pattern index, message) for each pattern no connector can match.

    The connectors are those of the hook's `relays`, or every loaded one. A type that is all
    template (generic's `?type=`) can be anything: it counts only for a hook that names its
    relays, so that a typo is not excused by a connector that could emit it in theory."""
    by_relay = {relay.name: relay.connector for relay in relays}
    found: list[tuple[int, int, str]] = []
    for h, hook in enumerate(hooks):
        named = [by_relay[name] for name in hook.spec.relays if name in by_relay]
        scope = named if hook.spec.relays else list(connectors.values())
        literal: set[str] = set()
        prefixes: set[str] = set()
        for connector in scope:
            types, starts = emitted_types(connector)
            literal |= types
            prefixes |= {p for p in starts if p or hook.spec.relays}
        for p, pattern in enumerate(hook.spec.events):
            if not pattern_can_match(pattern, literal, prefixes):
                found.append((h, p, _no_match(pattern, literal, prefixes)))
    return found


def _no_match(pattern: str, literal: set[str], prefixes: set[str]) -> str:
    known = sorted(literal) + sorted(p + "*" for p in prefixes if p)
    near = difflib.get_close_matches(pattern, known, n=3, cutoff=0.5) or known[:5]
    return (f"event pattern {pattern!r} matches no event type the connectors can emit (the "
            f"hook would never fire); nearest: {', '.join(near) or 'none'}")


# --- examples --------------------------------------------------------------------------------


def example_findings(connector: Connector) -> list[Finding]:
    """Map every example of the connector, recording every name its templates look up.

    Reports an example that does not map, a rule (that makes events or answers) applied by no
    example, and a name that never resolves on any example, even behind `default` or
    `is defined`: each is a mistake, or a fallback no example shows."""
    examples = connector.examples()
    if not examples:
        return []
    findings: list[Finding] = []
    with recording_lookups() as log:
        for example in examples:
            request = InboundRequest(example.method, example.query, example.headers, example.body)
            try:
                map_inbound(connector, request, relay="example", received_at=EXAMPLE_TIME,
                            new_id=_example_ids())
            except MappingError as exc:
                findings.append((_example_key(connector, example.name),
                                 f"example {example.name!r} does not map: {exc}"))
    for rule in connector.rules:
        shown = f"{rule.name}.type" if rule.makes_events else f"{rule.name}.answer.body"
        if rule.reject is None and not any(n.startswith(shown) for n in log.rendered):
            findings.append((rule.name, f"rule {rule.label!r} applies to none of the examples: "
                                        "add one it applies to (`[[examples]]`)"))
    for (template, name), keys in sorted(log.never_found().items()):
        findings.append((template, _never_found(name, keys, len(examples))))
    return findings


def _example_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"example-{next(counter)}"


def _example_key(connector: Connector, name: str) -> str:
    if name == "example":
        return "example" if connector.spec.example is not None else "example_query"
    names = [ex.name for ex in connector.spec.examples]
    index = names.index(name) if name in names else int(name[len("examples["):-1])
    return f"examples[{index}]"


def _never_found(name: str, keys: set[str], count: int) -> str:
    where = "the example" if count == 1 else f"any of the {count} examples"
    message = f"`{name}` never resolves on {where}, even where a default covers it"
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
    if close:
        return f"{message}: did you mean `{close[0]}`?"
    if keys:
        shown = ", ".join(sorted(keys)[:8]) + (", ..." if len(keys) > 8 else "")
        return f"{message} (it was looked up among: {shown}); a typo, or add an example that has it"
    return f"{message}: a typo, or add an example that has it"
