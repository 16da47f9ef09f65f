"""Mapping: one inbound request -> its events, through a connector. Pure: no I/O, no clock.

    events = map_request(connector, request, relay="gmetri-prod", received_at=now, new_id=uuid4str)

A request that cannot be mapped raises MappingError with a message meant for the provider's
integrator: what was wrong, and where.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from relayhook.core.connectors import CompiledAnswer, CompiledRule, Connector
from relayhook.core.events import Event, format_time, keyed_event_id, parse_time
from relayhook.core.templating import RenderError
from relayhook.core.values import describe
from relayhook.errors import RelayhookError

MAX_EVENTS = 50_000  # events one request may make (GMetri's largest: 500 rows x their rules)


class MappingError(RelayhookError):
    """The request cannot be turned into events; the message says why."""


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """What a provider sent: method, raw query string, (lower-cased name, value) headers, body."""

    method: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def media_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()


def parse_pairs(text: str) -> dict[str, Any]:
    """`a=1&b=2&b=3` -> {"a": "1", "b": ["2", "3"]}: a repeated name becomes a list."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def _json_error(exc: json.JSONDecodeError, text: str) -> str:
    message = f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if any(quote in text for quote in "\u201c\u201d\u2018\u2019"):
        message += ' (it contains typographic quotes \u201c \u201d where JSON needs ")'
    return message


# orjson parses twice as fast as json (82 against 155 us for a 39 KB GMetri batch), and where it
# takes a body at all it reads it as json does, as JSON data events hold: it refuses NaN,
# Infinity, 1e400, lone surrogates, a BOM and invalid UTF-8 (json's path below then says what is
# wrong, or keeps what it may). Except for integers past 64 bits, which it turns into floats:
# a body with a run of 19 digits anywhere (23 us to look for one in 39 KB) goes to json.
_DIGIT_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_MAYBE_LONG_INTEGER = b"0" * 19


def _parse_json(body: bytes) -> tuple[Any, bool]:
    """The body's value, and whether it is JSON data as events hold it: Python's parser also
    takes NaN and Infinity, which an event's data may not hold (so `_json_data` must look)."""
    if _MAYBE_LONG_INTEGER not in body.translate(_DIGIT_TO_ZERO):
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(body), True
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MappingError(f"body is not UTF-8 text: byte {exc.start} is invalid") from exc
    try:
        value, plain = _loads(text)
        if "\\ud" in text or "\\uD" in text:  # only escapes make lone surrogates
            value = _without_lone_surrogates(value)
    except json.JSONDecodeError as exc:
        raise MappingError(_json_error(exc, text)) from exc
    except RecursionError as exc:
        raise MappingError("body is not valid JSON: nested too deeply") from exc
    return value, plain


class _NotPlainError(ValueError):
    """A number JSON data may not hold: NaN, Infinity, or a float too large (1e400)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotPlainError(text)
    return value


def _no_constant(name: str) -> Any:
    raise _NotPlainError(name)


# json.loads, except that it stops at a number an event's data may not hold (the body has no
# float literal at all, mostly: the hook is then never called).
_PLAIN_JSON = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


def _loads(text: str) -> tuple[Any, bool]:
    """The value, and whether it holds only finite numbers (JSON data as events hold it)."""
    try:
        return _PLAIN_JSON.decode(text), True
    except _NotPlainError:
        plain = False
    except json.JSONDecodeError:
        raise
    except ValueError:
        plain = True
    try:
        return json.loads(text), plain
    except json.JSONDecodeError:
        raise
    except ValueError:
        # An integer longer than int() takes (4300 digits, CVE-2020-10735): parsed again,
        # keeping such integers as the text of their digits, so that no digit is lost.
        return json.loads(text, parse_int=_int_or_digits), False


def _int_or_digits(digits: str) -> int | str:
    try:
        return int(digits)
    except ValueError:
        return digits


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """`value` with each lone surrogate (`"\\ud800"`: valid JSON, not Unicode text, not
    storable) replaced by U+FFFD, as a UTF-8 decoder does; the raw body keeps the original."""
    text = json.dumps(value, ensure_ascii=False)
    if _SURROGATE.search(text) is None:  # surrogate pairs only: real characters
        return value
    return json.loads(_SURROGATE.sub("\ufffd", text), parse_int=_int_or_digits)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def _describe_format(fmt: str) -> str:
    return {
        "json-object": "a JSON object",
        "json-array": "a JSON array",
        "form": "a form-encoded body",
        "query": "no body (parameters in the query string)",
    }[fmt]


def parse_body(connector: Connector, request: InboundRequest) -> Any:
    """The request's body as data, in one of the formats the connector accepts."""
    return _parse_body(connector, request)[0]


def _parse_body(connector: Connector, request: InboundRequest) -> tuple[Any, bool]:
    """The body as data, and whether it is JSON data already (then an event whose data is the
    body as parsed need not be walked and copied again: 0.7 ms for a 39 KB body)."""
    accepted = connector.spec.accept.formats
    plain = True
    if not request.body.strip():
        fmt, body = "query", {}
    elif request.media_type == "application/x-www-form-urlencoded" and "form" in accepted:
        try:
            fmt, body = "form", parse_pairs(request.body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise MappingError("form body is not UTF-8 text") from exc
    else:
        try:
            body, plain = _parse_json(request.body)
        except MappingError as exc:
            if request.media_type == "application/x-www-form-urlencoded":
                raise MappingError(
                    f"{exc} (the request is form-encoded, which connector "
                    f"{connector.id!r} does not take)"
                ) from exc
            raise
        if isinstance(body, dict):
            fmt = "json-object"
        elif isinstance(body, list):
            fmt = "json-array"
        else:
            raise MappingError(f"body is a JSON {_json_kind(body)}, not an object or array")
    if fmt not in accepted:
        wanted = " or ".join(_describe_format(f) for f in accepted)
        got = _describe_format(fmt)
        raise MappingError(f"connector {connector.id!r} takes {wanted}; got {got}")
    return body, plain


def request_scope(connector: Connector, request: InboundRequest, relay: str) -> dict[str, Any]:
    """The variables every template of the connector sees."""
    return _request_scope(connector, request, relay)[0]


def _request_scope(
    connector: Connector, request: InboundRequest, relay: str
) -> tuple[dict[str, Any], Any]:
    """The scope, and the body when it is JSON data as parsed (else a sentinel)."""
    body, plain = _parse_body(connector, request)
    scope = {
        "body": body,
        "query": parse_pairs(request.query),
        "headers": dict(request.headers),
        "method": request.method,
        "relay": relay,
    }
    return scope, body if plain else _NOT_PLAIN


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    """What a rule that answers sends the provider instead of Relayhook's JSON."""

    status: int
    headers: tuple[tuple[str, str], ...]  # Content-Type first
    body: bytes

    def to_json(self) -> dict[str, Any]:
        """For `relayhook map`: status, headers and the body as text."""
        return {
            "status": self.status,
            "headers": dict(self.headers),
            "body": self.body.decode("utf-8", errors="replace"),
        }


@dataclass(frozen=True, slots=True)
class Mapped:
    """A request's events and, when a rule answers it, the answer the provider gets."""

    events: list[Event]
    answer: ProviderAnswer | None = None
    body: Any = None  # the request's body as parsed, when it is JSON (payload shapes read it)


def map_request(
    connector: Connector,
    request: InboundRequest,
    *,
    relay: str,
    received_at: datetime,
    new_id: Callable[[], str],
) -> list[Event]:
    """All events the connector's rules make of one request (possibly none)."""
    return map_inbound(
        connector, request, relay=relay, received_at=received_at, new_id=new_id
    ).events


def map_inbound(
    connector: Connector,
    request: InboundRequest,
    *,
    relay: str,
    received_at: datetime,
    new_id: Callable[[], str],
) -> Mapped:
    """The request's events, and the answer a rule gives the provider, if one does.

    Rules that answer or refuse are tried first, in order: the first that applies takes the
    request whole (a refusal raises MappingError; an answer comes with the events of that rule
    alone). Otherwise every event rule that applies makes its events."""
    scope, plain_body = _request_scope(connector, request, relay)
    builder = _EventBuilder(relay, format_time(received_at), new_id, plain_body)
    try:
        for rule in connector.rules:
            if rule.decides:
                decided = _decide(connector, rule, scope, builder)
                if decided is not None:
                    return decided
        events: list[Event] = []
        applied = 0
        for rule in connector.rules:
            if not rule.decides:
                applied += _apply(connector, rule, scope, builder, events)
    except RenderError as exc:
        raise MappingError(f"{connector.id}: {exc}") from exc
    if not applied:
        names = "; ".join(rule.label for rule in connector.rules)
        raise MappingError(f"{connector.id}: no event rule applies to this request ({names})")
    return Mapped(events, body=None if plain_body is _NOT_PLAIN else plain_body)


def _apply(
    connector: Connector,
    rule: CompiledRule,
    scope: dict[str, Any],
    builder: _EventBuilder,
    events: list[Event],
) -> int:
    """Add the rule's events; 1 if the rule applied to the request, else 0."""
    values: dict[str, Any] = {}
    rule_scope = _bind_lets(rule, scope)
    if not _render_level(rule, 0, rule_scope, values):
        return 0
    for done in _expand(rule, 0, rule_scope, values):
        events.append(builder.build(rule, done))
        if len(events) > MAX_EVENTS:
            raise MappingError(f"{connector.id}: more than {MAX_EVENTS} events from one request")
    return 1


def _decide(
    connector: Connector, rule: CompiledRule, scope: dict[str, Any], builder: _EventBuilder
) -> Mapped | None:
    rule_scope = _bind_lets(rule, scope)
    when = rule.fields.get("when")
    if when is not None and not when[1].render(rule_scope):
        return None
    if rule.reject is not None:
        raise MappingError(f"{connector.id}: {_text_of(rule.reject.render(rule_scope))}")
    assert rule.answer is not None
    events: list[Event] = []
    if rule.makes_events:
        _apply(connector, rule, scope, builder, events)
    return Mapped(events, _answer(rule.answer, rule_scope, rule.name))


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _answer(answer: CompiledAnswer, scope: dict[str, Any], name: str) -> ProviderAnswer:
    value = answer.body.render(scope)
    if isinstance(value, str):
        body, content_type = value.encode("utf-8"), "text/plain; charset=utf-8"
    else:
        data = _json_data(value, f"{name}.answer.body")
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        content_type = "application/json"
    headers = [("content-type", answer.content_type or content_type)]
    for header, template in answer.headers.items():
        text = _text_of(template.render(scope))
        if any(c in text for c in "\r\n\0"):
            raise RenderError(template.name, "a header value may not hold CR, LF or NUL")
        if not text.isascii():
            try:
                text.encode("latin-1")
            except UnicodeEncodeError:
                raise RenderError(
                    template.name,
                    f"a header value must be Latin-1 text (HTTP headers carry no other): {text!r}",
                ) from None
        headers.append((header.lower(), text))
    return ProviderAnswer(answer.status, tuple(headers), body)


def _bind_lets(rule: CompiledRule, scope: dict[str, Any]) -> dict[str, Any]:
    if not rule.lets:
        return scope
    scope = dict(scope)
    for name, template in rule.lets:
        scope[name] = template.render(scope)
    return scope


def _render_level(
    rule: CompiledRule, level: int, scope: dict[str, Any], values: dict[str, Any]
) -> bool:
    """Render the fields whose variables are all bound at `level`; False if `when` is false."""
    for name, (field_level, template) in rule.fields.items():  # "when" comes first
        if field_level == level:
            values[name] = template.render(scope)
            if name == "when" and not values[name]:
                return False
    return True


def _expand(
    rule: CompiledRule, level: int, scope: dict[str, Any], values: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Walk the rule's loops (and `let` values) below `level`, yielding each item's fields."""
    if level == len(rule.loops):
        yield values
        return
    loop = rule.loops[level].loop
    for item in loop.items(scope):
        inner = {**scope, **loop.bind(item)}
        inner_values = dict(values)
        if _render_level(rule, level + 1, inner, inner_values):
            yield from _expand(rule, level + 1, inner, inner_values)


def _kind(value: Any) -> str:
    return describe(value)


_NOT_PLAIN = object()
_TYPE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._:/-]*[A-Za-z0-9])?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(slots=True)
class _EventBuilder:
    relay: str
    received_at: str
    new_id: Callable[[], str]
    plain_body: Any  # the request's body when it is JSON data as parsed, else _NOT_PLAIN

    def build(self, rule: CompiledRule, values: dict[str, Any]) -> Event:
        key = values.get("key")
        data = values.get("data")
        if data is not self.plain_body:  # `{{ body }}` is JSON data already, shared as is
            data = _json_data(data, f"{rule.name}.data")
        return Event(
            id=self._id(rule, key),
            source=_text(values["source"], f"{rule.name}.source"),
            type=_event_type(values["type"], f"{rule.name}.type"),
            subject=_subject(values.get("subject"), f"{rule.name}.subject"),
            time=_time(values.get("time"), self.received_at, f"{rule.name}.time"),
            data=data,
            relay=self.relay,
        )

    def _id(self, rule: CompiledRule, key: Any) -> str:
        if key is None or key == "":
            return self.new_id()
        if isinstance(key, dict | list):
            raise RenderError(f"{rule.name}.key", f"key must be a non-empty text, got {key!r}")
        return keyed_event_id(self.relay, str(key))


def _text(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        raise RenderError(name, f"expected a non-empty text, got {_kind(value)}")
    return str(value)


def _event_type(value: Any, name: str) -> str:
    text = _text(value, name)
    if not _TYPE.match(text):
        raise RenderError(
            name, f"{text!r} is not a valid event type (letters, digits and . _ - : / between)"
        )
    return text


def _subject(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    return _text(value, name)


def _time(value: Any, received_at: str, name: str) -> str:
    if value is None or value == "":
        return received_at
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        # A text with a fraction is epoch seconds (Slack's "1733050000.000100"); a whole
        # number, text or not, is epoch milliseconds (GMetri's timestamps).
        value = float(value) * 1000 if "." in value else float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > 253402300799999:
            raise RenderError(name, f"{value!r} is not a time in epoch milliseconds")
        return format_time(datetime.fromtimestamp(value / 1000, UTC))
    if isinstance(value, str):
        try:
            return format_time(parse_time(value))
        except ValueError:
            raise RenderError(
                name, f"{value!r} is neither RFC 3339 nor epoch milliseconds"
            ) from None
    raise RenderError(name, f"expected a time, got {_kind(value)}")


def _json_data(value: Any, name: str) -> Any:
    """Check that data is JSON: objects with text keys, arrays, text, finite numbers, bools."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RenderError(name, f"{value!r} is not a JSON number")
        return value
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise RenderError(name, f"object key {key!r} is not text")
        return {key: _json_data(item, name) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_data(item, name) for item in value]
    if isinstance(value, Mapping):
        return _json_data(dict(value), name)
    raise RenderError(name, f"{type(value).__name__} is not JSON data")
