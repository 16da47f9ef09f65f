"""Connectors: one TOML file per provider, validated by the models below and compiled at load.

The pydantic models are the one source of truth for the schema: `connectors/schema.json` is
generated from them (`relayhook schema`), and `connectors/README.md` teaches them by example.
A connector that does not validate or whose templates do not compile fails at load with
`file:key:line: message`, never mid-request.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relayhook._shipped import shipped_dir
from relayhook.errors import ConnectorError
from relayhook.templating import (
    CompiledValue,
    Template,
    TemplateError,
    compile_template,
    compile_value,
    is_single_expression,
    referenced_names,
)
from relayhook.tomlpos import (
    KeyPath,
    format_path,
    line_of,
    locate_keys,
    toml_error_line,
    value_line,
)

SHIPPED_DIR = shipped_dir("connectors")

REQUEST_VARIABLES = ("body", "query", "headers", "method", "relay")
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
BodyFormat = Literal["json-object", "json-array", "form", "query"]

_SCOPE = "Variables in scope: body, query, headers (lower-cased names), method, relay"
_LOOP_SCOPE = _SCOPE + ", the rule's `let` values and the variables of its `for` loops."


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BasicAuth(Spec):
    """`Authorization: Basic <credentials>`, where the credentials equal the relay's secret."""

    scheme: Literal["basic"] = Field(
        description="The credentials after `Basic ` equal the relay's secret (constant-time "
        "comparison). A secret in `user:password` form also matches its base64 encoding.",
        examples=["basic"],
    )


class HeaderAuth(Spec):
    """A named header carries the relay's secret."""

    scheme: Literal["header"] = Field(description="A named header equals the secret.")
    header: str = Field(description="The header's name.", examples=["X-Relay-Token"])
    prefix: str = Field(
        default="",
        description="Text before the secret in the header's value.",
        examples=["Bearer "],
    )


class HmacAuth(Spec):
    """A header carries an HMAC of the raw body, keyed with the relay's secret."""

    scheme: Literal["hmac"] = Field(description="A signature over the exact body bytes.")
    header: str = Field(description="The header holding the signature.", examples=["X-Signature"])
    algorithm: Literal["sha1", "sha256", "sha512"] = Field(
        default="sha256", description="The HMAC's hash.", examples=["sha256"]
    )
    encoding: Literal["hex", "base64"] = Field(
        default="hex", description="How the signature is written.", examples=["hex"]
    )
    prefix: str = Field(
        default="", description="Text before the signature.", examples=["sha256="]
    )


class NoAuth(Spec):
    """No credentials: the relay URL's secret token is the credential."""

    scheme: Literal["none"] = Field(description="Only the secret path authenticates.")


Auth = Annotated[BasicAuth | HeaderAuth | HmacAuth | NoAuth, Field(discriminator="scheme")]


class Accept(Spec):
    """What requests the connector takes; anything else is answered 405 or 400."""

    methods: list[Method] = Field(
        default=["POST"],
        min_length=1,
        description="HTTP methods accepted at the relay URL; others get 405.",
        examples=[["POST"], ["GET", "POST"]],
    )
    formats: list[BodyFormat] = Field(
        default=["json-object"],
        min_length=1,
        description="Body formats accepted: `json-object`, `json-array`, `form` "
        "(application/x-www-form-urlencoded) and `query` (no body; the data is in the query "
        "string). A body in another format is answered 400 and kept as rejected.",
        examples=[["json-object"], ["json-array"], ["query", "form", "json-object"]],
    )


class EventRule(Spec):
    """One rule: which requests it applies to, how it splits them, and the events it makes."""

    name: str | None = Field(
        default=None, description="A label for errors and docs.", examples=["rule triggered"]
    )
    when: str | None = Field(
        default=None,
        description="A condition template; the rule makes no event where it is false. It is "
        "evaluated as soon as the loop variables it uses are bound. " + _LOOP_SCOPE,
        examples=["{{ body.type == 'rules' }}"],
    )
    let: dict[str, str] = Field(
        default={},
        description="Named values computed once per request, before the loops and before "
        "`when`, usable in every other template of the rule (a long expression written once). "
        "Each sees the ones before it. " + _SCOPE + ".",
        examples=[{"name": "{{ body.event | default(query.event) | default('') }}"}],
    )
    for_: list[str] = Field(
        default=[],
        alias="for",
        description="Nested loops, outermost first, each `name in expression` (or "
        "`a, b in expression`); the expression must give a list. One event per innermost "
        "item. " + _LOOP_SCOPE,
        examples=[["row in body.data.rows", "rule in row.rules"]],
    )
    type: str = Field(
        description="The event type, reverse-DNS style. " + _LOOP_SCOPE,
        examples=["gmetri.rule.triggered", "synthesisvr.session.{{ item.action }}d"],
    )
    source: str = Field(
        description="Where the event happened (CloudEvents `source`). " + _LOOP_SCOPE,
        examples=["gmetri/{{ body.data.orgSlug }}/{{ body.data.depSlug }}"],
    )
    subject: str | None = Field(
        default=None,
        description="Whom the event is about (a viewer, a customer, a player); numbers become "
        "strings. " + _LOOP_SCOPE,
        examples=["{{ row.identifier }}"],
    )
    time: str | None = Field(
        default=None,
        description="When it happened: RFC 3339 / ISO 8601 text, or a number of epoch "
        "milliseconds (`| epoch_s` for seconds). Absent or empty: the time Relayhook received "
        "the request. " + _LOOP_SCOPE,
        examples=["{{ rule.timestamp }}"],
    )
    data: Any = Field(
        default="{{ body }}",
        description="The event's payload: a template, or a table/array whose strings are "
        "templates. A single `{{ expression }}` keeps its native type. " + _LOOP_SCOPE,
        examples=["{{ row.variables }}", {"rule_id": "{{ rule.cid }}"}],
    )
    key: str | None = Field(
        default=None,
        description="A de-duplication key: events with the same key on the same relay are one "
        "event (the id derives from relay and key). " + _LOOP_SCOPE,
        examples=["{{ item.uuid }}:{{ item.action }}"],
    )


class ConnectorSpec(Spec):
    """How one provider's webhook is authenticated, parsed and split into events."""

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="The connector's id; equals the file's name without `.toml`.",
        examples=["gmetri"],
    )
    title: str = Field(description="The provider's name as users know it.", examples=["GMetri"])
    description: str = Field(default="", description="One paragraph: what the provider sends.")
    setup: str = Field(
        default="",
        description="What to paste where in the provider's settings, shown when a relay starts. "
        "A template with `relay_url` and `secret` in scope.",
        examples=["Webhook URL: {{ relay_url }}\nWebhook Basic Auth String: {{ secret }}"],
    )
    accept: Accept = Field(default_factory=Accept, description="Methods and body formats.")
    auth: Auth = Field(description="How a request proves it comes from the provider.")
    example: str | None = Field(
        default=None,
        description="A file of an example body, relative to the connector's file.",
        examples=["examples/gmetri-rules.json"],
    )
    example_query: dict[str, str] = Field(
        default={},
        description="Query parameters of the example request.",
        examples=[{"trigger": "push_click", "user": "u-123"}],
    )
    events: list[EventRule] = Field(
        min_length=1, description="Event rules; every rule that applies makes its events."
    )


@dataclass(frozen=True, slots=True)
class Loop:
    """A `for` loop of a rule."""

    names: tuple[str, ...]
    iterable: Template
    level: int  # how many loops enclose this one


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An event rule with its templates compiled, each tagged with the loop level where all the
    variables it reads are bound, so it is rendered once there and not once per item."""

    name: str  # the key path, `events[0]`: what errors name
    label: str  # the rule's `name`, or its key path
    lets: tuple[tuple[str, Template], ...]
    loops: tuple[Loop, ...]
    fields: dict[str, tuple[int, CompiledValue]]  # name -> (level, template); "when" included


@dataclass(frozen=True, slots=True)
class Connector:
    """A loaded, compiled connector."""

    spec: ConnectorSpec
    path: Path
    rules: tuple[CompiledRule, ...]
    setup: Template = field(repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    def example_body(self) -> bytes | None:
        if self.spec.example is None:
            return None
        return (self.path.parent / self.spec.example).read_bytes()


_LOOP = re.compile(
    r"^\s*(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+in\s+(?P<expr>.+)$", re.S
)


def _compile_loop(source: str, level: int, name: str, bound: set[str]) -> Loop:
    match = _LOOP.match(source)
    if match is None:
        raise TemplateError(name, f"expected `name in expression`, got {source!r}")
    names = tuple(part.strip() for part in match.group("names").split(","))
    for loop_name in names:
        _check_free(loop_name, bound, name)
    expr = match.group("expr").strip()
    return Loop(names, compile_template("{{ " + expr + " }}", name), level)


def _check_free(variable: str, bound: set[str], name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_]\w*", variable):
        raise TemplateError(name, f"{variable!r} is not a valid variable name")
    if variable in REQUEST_VARIABLES or variable in bound:
        raise TemplateError(name, f"variable {variable!r} hides another variable")


def _level(source: Any, loops: tuple[Loop, ...]) -> int:
    """The number of loops that must be entered before `source` can be rendered."""
    names = _names_in(source)
    level = 0
    for loop in loops:
        if names & set(loop.names):
            level = loop.level + 1
    return level


def _names_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return referenced_names(value)
    if isinstance(value, dict):
        return set().union(*(_names_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_names_in(v) for v in value))
    return set()


RULE_FIELDS = ("when", "type", "source", "subject", "time", "data", "key")


def _compile_rule(rule: EventRule, index: int) -> CompiledRule:
    prefix = f"events[{index}]"
    lets: list[tuple[str, Template]] = []
    loops: list[Loop] = []
    bound: set[str] = set()
    for name, source in rule.let.items():
        _check_free(name, bound, f"{prefix}.let.{name}")
        lets.append((name, compile_template(source, f"{prefix}.let.{name}")))
        bound.add(name)
    for depth, source in enumerate(rule.for_):
        loop = _compile_loop(source, depth, f"{prefix}.for[{depth}]", bound)
        bound.update(loop.names)
        loops.append(loop)
    frozen_loops = tuple(loops)
    for loop in frozen_loops:  # a loop's expression may only read variables bound before it
        if _level(loop.iterable.source, frozen_loops) > loop.level:
            raise TemplateError(loop.iterable.name, "reads a variable bound after it")
    if rule.when is not None and not is_single_expression(rule.when):
        raise TemplateError(
            f"{prefix}.when",
            "a condition is one {{ expression }}, e.g. {{ body.paid and body.shipped }}; "
            "text around or between expressions would always be true",
        )
    fields: dict[str, tuple[int, CompiledValue]] = {}
    for name in RULE_FIELDS:
        value = getattr(rule, name)
        if value is not None:
            fields[name] = (_level(value, frozen_loops), compile_value(value, f"{prefix}.{name}"))
    return CompiledRule(prefix, rule.name or prefix, tuple(lets), frozen_loops, fields)


def _key_path(name: str) -> KeyPath:
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", name):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


def load_connector(path: Path) -> Connector:
    """Read, validate and compile one connector file. Raises ConnectorError."""
    text = _read_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConnectorError(path, "(toml)", toml_error_line(str(exc)), str(exc)) from exc
    lines = locate_keys(text)
    try:
        spec = ConnectorSpec.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = _without_union_tags(error["loc"])
        raise ConnectorError(
            path, format_path(loc), line_of(lines, loc), _pydantic_message(error)
        ) from exc
    if spec.id != path.stem:
        raise ConnectorError(path, "id", line_of(lines, ("id",)), f"id {spec.id!r} must equal "
                             f"the file name {path.stem!r}")
    try:
        rules = tuple(_compile_rule(rule, i) for i, rule in enumerate(spec.events))
        setup = compile_template(spec.setup, "setup")
    except TemplateError as exc:
        line = value_line(text, line_of(lines, _key_path(exc.name))) + exc.line - 1
        raise ConnectorError(path, exc.name, line, exc.message) from exc
    if spec.example is not None and not (path.parent / spec.example).is_file():
        raise ConnectorError(path, "example", line_of(lines, ("example",)),
                             f"no such file: {spec.example}")
    return Connector(spec, path, rules, setup)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectorError(path, "(file)", 1, f"cannot read: {exc}") from exc


def _without_union_tags(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    # pydantic puts the discriminator's value after `auth`: ("auth", "hmac", "header").
    tags = ("basic", "header", "hmac", "none")
    return tuple(
        part for i, part in enumerate(loc) if not (i > 0 and loc[i - 1] == "auth" and part in tags)
    )


def _pydantic_message(error: Any) -> str:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return "unknown key (a typo?)"
    if error["type"] == "missing":
        return "required key is missing"
    return message


def connector_files(dirs: Iterable[Path]) -> list[Path]:
    """The `*.toml` files of the given folders, later folders overriding earlier ones by id."""
    by_id: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(folder.glob("*.toml")):
            by_id[path.stem] = path
    return list(by_id.values())


def load_connectors(dirs: Iterable[Path]) -> dict[str, Connector]:
    """Load every connector of the given folders (shipped ones first, then extra folders)."""
    return {path.stem: load_connector(path) for path in connector_files(dirs)}
