"""Diagnostics: every check of the configuration against what is known of real traffic. Pure.

`relayhook check`, `serve` at start, each change through the API and the console and
`GET /api/diagnostics` all ask this module (relayhook.diagnostics feeds it the store's
traffic); none has rules of its own. A finding has a level (an error stops `serve` and refuses
a change; a warning is shown and logged), a location (`file:key:line`, or `hook 'name': key`
for a hook kept in the store), a plain message and the nearest valid choice when there is one.

    findings = connector_findings(connector, locate)      # its examples, times, signatures
    findings += hook_findings(hook, locate, scope, traffic, secrets)
    for finding in findings: print(finding)               # file:key:line: [warning: ]message

The rules:
- a hook's event pattern no connector can emit (error), or one that matches none of the types
  the examples produce nor any type the store has seen (warning), with the nearest type;
- every hook rendered against each example event and recent stored event it matches;
- a connector's example that does not map, a rule no example applies to, a name that never
  resolves on any example (even behind `default`);
- an event time before 2000 or after 2100 (epoch seconds read as milliseconds, or the reverse);
- a retry schedule, a rate-limit window or a timeout out of plausible bounds (milliseconds);
- each example signed with a dummy secret the way the provider writes its headers
  (`auth.sign_headers`), then verified; an example that carries its provider's signature
  (`[[examples]] secret`) verified as it is.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from relayhook.core.auth import provider_headers, verify_example
from relayhook.core.connectors import Connector, ExampleRequest, emitted_types
from relayhook.core.events import Event, parse_time
from relayhook.core.hooks import Hook, pattern_regex
from relayhook.core.mapping import InboundRequest, MappingError, map_inbound
from relayhook.core.outbound import redactor, render_request, should_deliver
from relayhook.core.templating import RenderError, recording_lookups
from relayhook.core.tomlpos import KeyPath

if TYPE_CHECKING:
    from relayhook.relays import Relay

Finding_ = tuple[str, str]  # (key path in the connector file, message): example_findings
Level = Literal["error", "warning"]
Locate = Callable[[KeyPath], str]  # a key path -> `file:key:line` or `hook 'name': key`
EXAMPLE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_RETRY_DELAY = 7 * 86_400  # one wait of a retry schedule, in seconds
MAX_WINDOW = 86_400  # a rate limit's window, in seconds (a daily quota at most); a whole
# number of thousands above an hour is warned of: milliseconds, most likely
MIN_TIMEOUT = 1.0  # seconds; less is a timeout written in minutes or a typo
DUMMY_SECRET = "relayhook-check-dummy-secret-0123456789"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong (error) or suspicious (warning), where, and the nearest valid choice."""

    level: Level
    location: str
    message: str
    nearest: str | None = None

    def __str__(self) -> str:
        marker = "warning: " if self.level == "warning" else ""
        return f"{self.location}: {marker}{self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "location": self.location,
            "message": self.message,
            "nearest": self.nearest,
        }


@dataclass(frozen=True, slots=True)
class Traffic:
    """What is known of real traffic: the event types the store has seen with their counts,
    and recent stored events (newest first)."""

    seen_types: Mapping[str, int] = field(default_factory=dict)
    recent_events: Sequence[Event] = ()


NO_TRAFFIC = Traffic()


def errors_in(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


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
    return (
        f"event pattern {pattern!r} matches no event type the connectors can emit (the "
        f"hook would never fire); nearest: {', '.join(near) or 'none'}"
    )


# --- examples --------------------------------------------------------------------------------


def example_findings(connector: Connector) -> list[Finding_]:
    """Map every example of the connector, recording every name its templates look up.

    Reports an example that does not map, a rule (that makes events or answers) applied by no
    example, and a name that never resolves on any example, even behind `default` or
    `is defined`: each is a mistake, or a fallback no example shows."""
    examples = connector.examples()
    if not examples:
        return []
    findings: list[Finding_] = []
    with recording_lookups() as log:
        for example in examples:
            request = InboundRequest(example.method, example.query, example.headers, example.body)
            try:
                map_inbound(
                    connector,
                    request,
                    relay="example",
                    received_at=EXAMPLE_TIME,
                    new_id=_example_ids(),
                )
            except MappingError as exc:
                findings.append(_not_mapped(connector, example.name, exc))
    # A template that failed stopped the mapping: rules after it were never tried on that
    # example, so "applies to none" would be noise about them.
    failed = any(" fails on example " in message for _, message in findings)
    for rule in connector.rules:
        shown = f"{rule.name}.type" if rule.makes_events else f"{rule.name}.answer.body"
        if failed:
            continue
        if rule.reject is None and not any(n.startswith(shown) for n in log.rendered):
            findings.append(
                (
                    rule.name,
                    f"rule {rule.label!r} applies to none of the examples: "
                    "add one it applies to (`[[examples]]`)",
                )
            )
    for (template, name), keys in sorted(log.never_found().items()):
        findings.append((template, _never_found(name, keys, len(examples))))
    return findings


def _not_mapped(connector: Connector, example: str, exc: MappingError) -> Finding_:
    """An example that does not map, said at the template that failed (a `let` at its own
    line, with why it ran at all) or at the example."""
    cause = exc.__cause__
    if not isinstance(cause, RenderError):
        return (_example_key(connector, example), f"example {example!r} does not map: {exc}")
    rule = next((r for r in connector.rules if cause.name.startswith(r.name + ".")), None)
    label = f" of rule {rule.label!r}" if rule is not None else ""
    what = cause.name.rpartition(".")[2]
    if ".let." in cause.name:
        return (
            cause.name,
            f"`let` value {what!r}{label} fails on example {example!r}: "
            f"{cause.message}. A rule's `let` values are computed before its "
            "`when`, on every request: guard it (`| default(...)`, `if ... "
            "else`) for requests the rule is not for",
        )
    return (cause.name, f"{cause.name}{label} fails on example {example!r}: {cause.message}")


def _example_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"example-{next(counter)}"


def _example_key(connector: Connector, name: str) -> str:
    if name == "example":
        return "example" if connector.spec.example is not None else "example_query"
    names = [ex.name for ex in connector.spec.examples]
    index = names.index(name) if name in names else int(name[len("examples[") : -1])
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


# --- connectors: examples, times, signatures ----------------------------------------------


def example_events(connector: Connector, relay: str = "example") -> list[Event]:
    """The events the connector's examples map to (those that map), received at EXAMPLE_TIME."""
    events: list[Event] = []
    new_id = _example_ids()
    for example in connector.examples():
        request = InboundRequest(example.method, example.query, example.headers, example.body)
        try:
            events += map_inbound(
                connector, request, relay=relay, received_at=EXAMPLE_TIME, new_id=new_id
            ).events
        except MappingError:
            continue  # reported by example_findings
    return events


def connector_findings(connector: Connector, locate: Locate, *, now: float) -> list[Finding]:
    """Everything wrong with a connector that its examples show (all errors)."""
    found = [
        Finding("error", locate(_key_path(key)), message)
        for key, message in example_findings(connector)
    ]
    found += time_findings(connector, locate)
    found += signature_findings(connector, locate, now=now)
    return found


def time_findings(connector: Connector, locate: Locate) -> list[Finding]:
    """An event time before 2000 that would fall in 2000-2100 read as seconds, or after 2100
    that would fall there read as milliseconds: a unit read wrong. (A time wrong either way is
    a provider's placeholder, as GMetri's documented `"timestamp": 123456`.)"""
    found: list[Finding] = []
    for event in example_events(connector):
        moment = parse_time(event.time)
        epoch = moment.timestamp()
        if EARLIEST <= moment < LATEST:
            continue
        key = _time_key(connector, event.type)
        if moment < EARLIEST and _plausible(epoch * 1000):
            hint = (
                "epoch seconds read as milliseconds? write `{{ ... | epoch_s }}` (a text "
                "with a fraction, '1733050000.000100', is read as seconds)"
            )
            nearest = "| epoch_s"
        elif moment >= LATEST and _plausible(epoch / 1000):
            hint = "epoch milliseconds read as seconds? drop `| epoch_s` (numbers are epoch ms)"
            nearest = "epoch milliseconds"
        else:
            continue
        found.append(
            Finding(
                "error",
                locate(key),
                f"event {event.type!r} of the examples has "
                f"time {event.time}, before 2000 or after 2100: {hint}",
                nearest,
            )
        )
    return _unique(found)


def _plausible(epoch: float) -> bool:
    return EARLIEST.timestamp() <= epoch < LATEST.timestamp()


def _time_key(connector: Connector, event_type: str) -> KeyPath:
    for index, rule in enumerate(connector.spec.events):
        if rule.time and rule.type is not None and _type_could_be(rule.type, event_type):
            return ("events", index, "time")
    return ("events",)


def _type_could_be(template: str, event_type: str) -> bool:
    cut = min((i for i in (template.find("{{"), template.find("{%")) if i >= 0), default=-1)
    return template.strip() == event_type if cut < 0 else event_type.startswith(template[:cut])


def signature_findings(connector: Connector, locate: Locate, *, now: float) -> list[Finding]:
    """Each example signed with a dummy secret as the provider writes its headers, then verified
    as the relay would; an example that carries the provider's own signature verified as is."""
    from relayhook.core.auth import as_hmac, dummy_secret

    auth = connector.spec.auth
    hmac_auth = as_hmac(auth)
    if hmac_auth is None:
        return []
    found: list[Finding] = []
    if (
        hmac_auth.sign_headers is None
        and auth is hmac_auth
        and (hmac_auth.pattern or hmac_auth.timestamp or hmac_auth.content)
    ):
        return [
            Finding(
                "warning",
                locate(("auth",)),
                "the examples cannot be signed offline: "
                "add auth.sign_headers, how the provider writes its signature headers "
                '(e.g. { "Acme-Signature" = "t={{ timestamp }},v1={{ signature }}" '
                "}), so `check` and `relayhook sign` can sign them",
            )
        ]
    secret = dummy_secret(auth, DUMMY_SECRET)
    given = {
        (ex.name or f"examples[{i}]"): ex.secret for i, ex in enumerate(connector.spec.examples)
    }
    for example in connector.examples():
        key = _key_path(_example_key(connector, example.name))
        own = given.get(example.name)
        if own is not None:
            reason = verify_example(
                auth,
                own,
                dict(example.headers),
                example.body,
                query=example.query,
                method=example.method,
                now=now,
            )
            if reason is not None:
                found.append(
                    Finding(
                        "error",
                        locate(key),
                        f"example {example.name!r} carries "
                        f"the provider's signature, and the relay refuses it: "
                        f"{reason}: check auth.header, prefix, pattern, content "
                        "and secret_format against the provider's docs",
                    )
                )
            continue
        reason = _round_trip(connector, example, secret, now)
        if reason is not None:
            found.append(
                Finding(
                    "error",
                    locate(("auth",)),
                    f"example {example.name!r} signed "
                    f"with a dummy secret as auth.sign_headers writes it is "
                    f"refused: {reason}",
                )
            )
    return found


def _round_trip(
    connector: Connector, example: ExampleRequest, secret: str, now: float
) -> str | None:
    auth = connector.spec.auth
    headers = dict(example.headers)
    try:
        added = provider_headers(
            auth, secret, headers, example.body, query=example.query, method=example.method, now=now
        )
    except RenderError as exc:
        return f"cannot make the signed content: {exc.message}"
    except ValueError as exc:
        return str(exc)
    headers.update({name.lower(): value for name, value in added.items()})
    return verify_example(
        auth, secret, headers, example.body, query=example.query, method=example.method, now=now
    )


def _key_path(key: str) -> KeyPath:
    from relayhook.core.connectors import _key_path as parse

    return parse(key)


def _unique(found: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(found))


# --- hooks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """What a hook can receive: the connectors of its relays (or all), their example events
    (each with the relay it would come through), and the relays known."""

    connectors: Mapping[str, Connector]
    relays: Sequence[Relay] = ()

    def examples_for(self, hook: Hook) -> list[Event]:
        relays = [r for r in self.relays if not hook.spec.relays or r.name in hook.spec.relays]
        if relays:
            return [e for r in relays for e in _cached_examples(r.connector, r.name)]
        return [e for c in self.connectors.values() for e in _cached_examples(c, "example")]


# The example events of a connector, per relay: every hook of a scope renders against them.
# The connector is kept beside its events, so an id reused by a later connector never matches.
_EXAMPLES: dict[tuple[int, str], tuple[Connector, list[Event]]] = {}


def _cached_examples(connector: Connector, relay: str) -> list[Event]:
    key = (id(connector), relay)
    cached = _EXAMPLES.get(key)
    if cached is None or cached[0] is not connector:
        if len(_EXAMPLES) > 512:
            _EXAMPLES.clear()
        cached = _EXAMPLES[key] = (connector, example_events(connector, relay))
    return cached[1]


def hook_findings(
    hook: Hook,
    locate: Locate,
    scope: Scope,
    traffic: Traffic = NO_TRAFFIC,
    secrets: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Everything wrong with one hook: its patterns, its bounds, and rendering it."""
    examples = scope.examples_for(hook)
    found = pattern_findings(hook, locate, scope, examples, traffic)
    found += bounds_findings(hook, locate)
    found += render_findings(hook, locate, examples, traffic, secrets or {})
    return found


def pattern_findings(
    hook: Hook, locate: Locate, scope: Scope, examples: Sequence[Event], traffic: Traffic
) -> list[Finding]:
    """A pattern no connector can emit is an error; one that matches none of the types the
    examples produce and none the store has seen is a warning (a typo under a prefix whose
    type comes from the payload: `stripe.invoice.payed`)."""
    by_relay = {relay.name: relay.connector for relay in scope.relays}
    named = [by_relay[n] for n in hook.spec.relays if n in by_relay]
    connectors = named if hook.spec.relays else list(scope.connectors.values())
    literal: set[str] = set()
    prefixes: set[str] = set()
    for connector in connectors:
        types, starts = emitted_types(connector)
        literal |= types
        prefixes |= {p for p in starts if p or hook.spec.relays}
    known = {e.type for e in examples} | set(traffic.seen_types)
    found: list[Finding] = []
    for p, pattern in enumerate(hook.spec.events):
        where = locate(("events", p))
        regex = pattern_regex(pattern)
        seen = any(regex.fullmatch(t) for t in traffic.seen_types)  # it came: it can come
        if not seen and not pattern_can_match(pattern, literal, prefixes):
            message = _no_match(pattern, literal, prefixes)
            found.append(
                Finding(
                    "error",
                    where,
                    message,
                    _nearest(pattern, literal | known)
                    or message.rpartition("nearest: ")[2].split(", ")[0],
                )
            )
            continue
        if any(regex.fullmatch(t) for t in literal | known):
            continue
        near = _nearest(pattern, known | literal)
        total = sum(traffic.seen_types.values())
        message = (
            f"event pattern {pattern!r} matches none of the event types the examples "
            f"produce or the store has seen ({total} events): a typo? the hook fires "
            "only if such a type ever comes"
        )
        if near is not None:
            count = traffic.seen_types.get(near)
            message += f"; nearest: {near}" + (f" (seen {count} times)" if count else "")
        found.append(Finding("warning", where, message, near))
    return found


def _nearest(pattern: str, types: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(pattern, sorted(types), n=1, cutoff=0.5)
    return close[0] if close else None


def bounds_findings(hook: Hook, locate: Locate) -> list[Finding]:
    """A retry schedule, a rate-limit window or a timeout out of plausible bounds: usually a
    value written in milliseconds where seconds are meant."""
    found: list[Finding] = []
    schedule = hook.retry.schedule
    if schedule and max(schedule) > MAX_RETRY_DELAY:
        total = sum(schedule) / 86_400
        seconds = [_short(d / 1000) for d in schedule]
        found.append(
            Finding(
                "error",
                locate(("retry", "schedule")),
                f"retry.schedule waits {_short(max(schedule))} s at once and "
                f"{total:.0f} days in all; it is in seconds, each wait at most "
                f"{MAX_RETRY_DELAY} s (7 days): milliseconds? "
                f"[{', '.join(seconds)}]",
                f"[{', '.join(seconds)}]",
            )
        )
    limit = hook.rate_limit
    window = limit.window if limit is not None else None
    if window is not None and (window > MAX_WINDOW or (window > 3600 and window % 1000 == 0)):
        found.append(
            Finding(
                "error" if window > MAX_WINDOW else "warning",
                locate(("rate_limit", "window")),
                f"rate_limit.window is {_short(window)} s ({window / 3600:.1f} "
                f"hours): it is in seconds, at most {MAX_WINDOW} (a day): "
                f"milliseconds? {_short(window / 1000)}",
                _short(window / 1000),
            )
        )
    if limit is not None and limit.per_second is not None and limit.per_second > 10_000:
        found.append(
            Finding(
                "warning",
                locate(("rate_limit", "per_second")),
                f"rate_limit.per_second = {_short(limit.per_second)} is no limit "
                "at all: per second, not per hour or per day?",
            )
        )
    if hook.spec.timeout is not None and hook.spec.timeout < MIN_TIMEOUT:
        found.append(
            Finding(
                "warning",
                locate(("timeout",)),
                f"timeout = {_short(hook.spec.timeout)} s: few receivers answer "
                "that fast; it is in seconds (default 10, at most 300)",
            )
        )
    return found


def _short(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


MAX_RENDERED = 50  # stored events rendered per hook


def render_findings(
    hook: Hook,
    locate: Locate,
    examples: Sequence[Event],
    traffic: Traffic,
    secrets: Mapping[str, str],
) -> list[Finding]:
    """The hook rendered against each example event and recent stored event it matches: a
    template that fails on all of them would kill the first delivery (an error); one that fails
    on some would kill those (a warning)."""
    matched = [(e, "example") for e in examples if hook.matches(e.type, e.relay)]
    stored = [(e, "stored") for e in traffic.recent_events if hook.matches(e.type, e.relay)]
    failures: dict[str, list[tuple[Event, str]]] = {}
    for event, kind in [*matched, *stored[:MAX_RENDERED]]:
        try:
            if should_deliver(hook, event, secrets):
                render_request(hook, event, delivery_id="check", secrets=secrets, now=0.0)
        except RenderError as exc:
            failures.setdefault(f"{exc.name}\n{exc.message}", []).append((event, kind))
    total = len(matched) + len(stored[:MAX_RENDERED])
    found: list[Finding] = []
    hide = redactor(secrets, hook.secret_places)  # an error may quote a secret value
    for text, events in failures.items():
        name, message = hide(text).split("\n", 1)
        event, kind = events[0]
        which = (
            f"the example event {event.type!r}"
            if kind == "example"
            else f"stored event {event.id} ({event.type})"
        )
        more = f" and {len(events) - 1} more of the {total} it matches" if len(events) > 1 else ""
        # An error when no event it matches renders: the first delivery would die. When some
        # do (a real event carries a field the connector's example lacks), a warning.
        level: Level = "error" if len(events) == total else "warning"
        found.append(
            Finding(
                level,
                locate(_hook_key(name)),
                f"{name} fails on {which}{more}: {message}; the delivery would die",
            )
        )
    return found


def _hook_key(template_name: str) -> KeyPath:
    return _key_path(template_name)
