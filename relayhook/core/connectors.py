"""Connectors: one TOML file per provider, validated against the schema and compiled at load.

The schema is `relayhook.core.connector_schema` (pydantic models, the one source of truth:
`connectors/schema.json` is generated from them). A connector that does not validate or whose
templates do not compile fails at load with `file:key:line: message`, never mid-request.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from relayhook._shipped import shipped_dir
from relayhook.core.connector_schema import (
    AUTH_SCHEMES,
    REQUEST_VARIABLES,
    Accept,
    Answer,
    Auth,
    BasicAuth,
    BodyFormat,
    ConnectorSpec,
    EventRule,
    Example,
    HeaderAuth,
    HmacAuth,
    Method,
    NoAuth,
    StandardWebhooksAuth,
)
from relayhook.core.regex import RegexError, compile_regex
from relayhook.core.templating import (
    Template,
    TemplateError,
    compile_template,
    is_single_expression,
)
from relayhook.core.tomlpos import (
    KeyPath,
    format_path,
    line_of,
    locate_keys,
    toml_error_line,
    value_line,
)
from relayhook.core.values import CompiledValue, compile_value, parse_loop, value_names
from relayhook.core.values import Loop as ParsedLoop
from relayhook.errors import ConnectorError, field_message

__all__ = [
    "SHIPPED_DIR",
    "REQUEST_VARIABLES",
    "Accept",
    "Answer",
    "Auth",
    "BasicAuth",
    "BodyFormat",
    "CompiledAnswer",
    "CompiledRule",
    "Connector",
    "ConnectorSpec",
    "EventRule",
    "Example",
    "ExampleRequest",
    "HeaderAuth",
    "HmacAuth",
    "Loop",
    "Method",
    "NoAuth",
    "StandardWebhooksAuth",
    "connector_files",
    "emitted_types",
    "load_connector",
    "load_connectors",
]

SHIPPED_DIR = shipped_dir("connectors")


@dataclass(frozen=True, slots=True)
class Loop:
    """A `for` loop of a rule."""

    loop: ParsedLoop
    level: int  # how many loops enclose this one

    @property
    def names(self) -> tuple[str, ...]:
        return self.loop.names

    @property
    def iterable(self) -> Template:
        return self.loop.iterable


@dataclass(frozen=True, slots=True)
class CompiledAnswer:
    """A rule's answer to the provider, compiled (rendered with the request's variables)."""

    status: int
    content_type: str | None
    body: CompiledValue
    headers: dict[str, Template]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An event rule with its templates compiled, each tagged with the loop level where all the
    variables it reads are bound, so it is rendered once there and not once per item."""

    name: str  # the key path, `events[0]`: what errors name
    label: str  # the rule's `name`, or its key path
    lets: tuple[tuple[str, Template], ...]
    loops: tuple[Loop, ...]
    fields: dict[str, tuple[int, CompiledValue]]  # name -> (level, template); "when" included
    answer: CompiledAnswer | None = None
    reject: Template | None = None

    @property
    def decides(self) -> bool:
        """Whether the rule, when it applies, takes the request whole (answers or refuses)."""
        return self.answer is not None or self.reject is not None

    @property
    def makes_events(self) -> bool:
        return "type" in self.fields


@dataclass(frozen=True, slots=True)
class ExampleRequest:
    """One of a connector's example requests, as the provider would send it."""

    name: str
    method: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


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

    def examples(self) -> list[ExampleRequest]:
        """Every example request: `example`/`example_query` first (named `example`), then
        `[[examples]]` (named by `name`, else `examples[N]`)."""
        given: list[tuple[str, Example]] = []
        if self.spec.example is not None or self.spec.example_query:
            given.append(
                ("example", Example(body=self.spec.example, query=self.spec.example_query))
            )
        given += [(ex.name or f"examples[{i}]", ex) for i, ex in enumerate(self.spec.examples)]
        return [self._request(name, ex) for name, ex in given]

    def _request(self, name: str, example: Example) -> ExampleRequest:
        body = b"" if example.body is None else (self.path.parent / example.body).read_bytes()
        method = example.method or self.spec.accept.methods[-1]
        headers = tuple((k.lower(), v) for k, v in example.headers.items())
        return ExampleRequest(name, method, urlencode(example.query), headers, body)


def emitted_types(connector: Connector) -> tuple[set[str], set[str]]:
    """The event types the connector can emit: literal ones (and the literal fallbacks of
    templated ones: `generic.webhook.received` of `{{ query.type | default('generic.webhook.
    received') }}`), and the literal prefixes of templated ones (`gamify.` of
    `gamify.{{ ... }}`; `""` for a type that is all template)."""
    literal: set[str] = set()
    prefixes: set[str] = set()
    for rule in connector.spec.events:
        text = rule.type
        if text is None:
            continue
        cut = min((i for i in (text.find("{{"), text.find("{%")) if i >= 0), default=-1)
        if cut < 0:
            literal.add(text.strip())
        else:
            prefixes.add(text[:cut].strip())
            literal.update(m.group(2) for m in DEFAULT_LITERAL.finditer(text))
    return literal, prefixes


# `| default('x')` / `| default("x")` in a templated type: a value the type takes for sure
DEFAULT_LITERAL = re.compile(r"""\|\s*default\(\s*(['"])([^'"{}%]+)\1\s*\)""")


def _check_free(variable: str, bound: set[str], name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_]\w*", variable):
        raise TemplateError(name, f"{variable!r} is not a valid variable name")
    if variable in REQUEST_VARIABLES or variable in bound:
        raise TemplateError(name, f"variable {variable!r} hides another variable")


def _level(source: Any, loops: tuple[Loop, ...]) -> int:
    """The number of loops that must be entered before `source` can be rendered."""
    names = value_names(source)
    level = 0
    for loop in loops:
        if names & set(loop.names):
            level = loop.level + 1
    return level


RULE_FIELDS = ("when", "type", "source", "subject", "time", "data", "key")


def _check_kind(rule: EventRule, prefix: str) -> None:
    """A rule makes events (type and source), answers, or rejects (and then nothing else)."""
    makes_events = rule.type is not None or rule.source is not None
    if rule.reject is not None and (makes_events or rule.answer is not None):
        raise TemplateError(
            f"{prefix}.reject",
            "a rule that rejects makes no event and gives no answer: drop type, source and answer",
        )
    if makes_events or rule.answer is None and rule.reject is None:
        for key in ("type", "source"):
            if getattr(rule, key) is None:
                raise TemplateError(
                    f"{prefix}.{key}", "required key is missing (or answer, or reject)"
                )


def _compile_rule(rule: EventRule, index: int) -> CompiledRule:
    prefix = f"events[{index}]"
    _check_kind(rule, prefix)
    lets: list[tuple[str, Template]] = []
    loops: list[Loop] = []
    bound: set[str] = set()
    for name, source in rule.let.items():
        _check_free(name, bound, f"{prefix}.let.{name}")
        lets.append((name, compile_template(source, f"{prefix}.let.{name}")))
        bound.add(name)
    for depth, source in enumerate(rule.for_):
        loop = Loop(parse_loop(source, f"{prefix}.for[{depth}]"), depth)
        for loop_name in loop.names:
            _check_free(loop_name, bound, f"{prefix}.for[{depth}]")
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
    answer, reject = _compile_decision(rule, prefix, frozen_loops)
    return CompiledRule(
        prefix, rule.name or prefix, tuple(lets), frozen_loops, fields, answer, reject
    )


def _compile_decision(
    rule: EventRule, prefix: str, loops: tuple[Loop, ...]
) -> tuple[CompiledAnswer | None, Template | None]:
    """A rule's answer or rejection: one per request, so they read no loop variable (nor may
    the rule's `when`, which decides whether the request is taken whole)."""
    if rule.answer is None and rule.reject is None:
        return None, None
    for key, value in (
        ("when", rule.when),
        ("reject", rule.reject),
        ("answer.body", rule.answer.body if rule.answer else None),
        ("answer.headers", rule.answer.headers if rule.answer else None),
    ):
        if value is not None and _level(value, loops) > 0:
            raise TemplateError(
                f"{prefix}.{key}", "is decided once per request: it may not read a loop variable"
            )
    if rule.reject is not None:
        return None, compile_template(rule.reject, f"{prefix}.reject")
    spec = rule.answer
    assert spec is not None
    for name in spec.headers:
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) or name.lower() in (
            "content-length",
            "transfer-encoding",
            "connection",
            "content-type",
        ):
            raise TemplateError(
                f"{prefix}.answer.headers.{name}",
                f"{name!r} cannot be set here (content_type sets the Content-Type)",
            )
    headers = {
        k: compile_template(v, f"{prefix}.answer.headers.{k}") for k, v in spec.headers.items()
    }
    body = compile_value(spec.body, f"{prefix}.answer.body")
    return CompiledAnswer(spec.status, spec.content_type, body, headers), None


def _check_auth(auth: Auth) -> None:
    """Compile an `hmac` scheme's templates and pattern, so that a mistake fails at load."""
    if not isinstance(auth, HmacAuth):
        return
    if auth.pattern is not None:
        try:
            compiled = compile_regex(auth.pattern, "auth.pattern")
        except RegexError as exc:
            raise TemplateError("auth.pattern", exc.message) from exc
        if compiled.groups > 1:
            raise TemplateError("auth.pattern", "at most one group: the signature")
    for key in ("content", "timestamp"):
        source = getattr(auth, key)
        if source is not None:
            compile_template(source, f"auth.{key}")


def _key_path(name: str) -> KeyPath:
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", name):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


def line_in(text: str, name: str) -> int:
    """The line of a key path (`events[0].data.answers.key`) in a connector file's text."""
    return value_line(text, line_of(locate_keys(text), _key_path(name)))


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
        raise ConnectorError(
            path,
            "id",
            line_of(lines, ("id",)),
            f"id {spec.id!r} must equal the file name {path.stem!r}",
        )
    try:
        rules = tuple(_compile_rule(rule, i) for i, rule in enumerate(spec.events))
        setup = compile_template(spec.setup, "setup")
        _check_auth(spec.auth)
    except TemplateError as exc:
        line = value_line(text, line_of(lines, _key_path(exc.name))) + exc.line - 1
        raise ConnectorError(path, exc.name, line, exc.message) from exc
    files = [("example", spec.example)] + [
        (f"examples[{i}].body", ex.body) for i, ex in enumerate(spec.examples)
    ]
    for key, name in files:
        if name is not None and not (path.parent / name).is_file():
            raise ConnectorError(path, key, line_of(lines, _key_path(key)), f"no such file: {name}")
    return Connector(spec, path, rules, setup)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectorError(path, "(file)", 1, f"cannot read: {exc}") from exc


def _without_union_tags(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    # pydantic puts the discriminator's value after `auth`: ("auth", "hmac", "header").
    tags = AUTH_SCHEMES
    return tuple(
        part for i, part in enumerate(loc) if not (i > 0 and loc[i - 1] == "auth" and part in tags)
    )


def _pydantic_message(error: Any) -> str:
    if error["type"] == "missing":
        return "required key is missing"
    return field_message(error).removeprefix("Value error, ")


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
