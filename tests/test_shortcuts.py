"""Shortcut templates (relayhook/core/shortcuts.py) against Jinja: the same value or the same error,
template by template and input by input, including the sandbox's refusals and hostile inputs."""

from __future__ import annotations

import sys
from typing import Any
from unittest import mock

import pytest

from relayhook.core import templating
from relayhook.core.templating import MAX_OUTPUT, MAX_STRING, compile_template

BIG = "x" * (MAX_STRING + 1)  # past the size a filter's result may have
HUGE = "y" * (MAX_OUTPUT + 1)  # past the output budget of one render
DEEP: Any = "bottom"
for _ in range(300):
    DEEP = {"a": DEEP}


class Text(str):
    pass


def function() -> None:  # a callable in the context: the sandbox refuses to output it
    pass


CONTEXTS: list[dict[str, Any]] = [
    {},
    {"body": {}, "query": {}, "headers": {}, "relay": "prod"},
    {
        "body": {"type": "session", "items": [1, 2], "data": {"orgSlug": "o", "depSlug": "d"}},
        "query": {"type": "demo.ping", "subject": "u-1"},
        "relay": "prod",
        "headers": {"webhook-id": "msg_1", "idempotency-key": "k"},
    },
    {
        "body": [{"a": 1}, {"a": 2}],
        "query": {"subject": ""},
        "headers": {"idempotency-key": "k"},
        "relay": "r\u0000\ud800",
    },
    {
        "body": {"type": 7, "keys": "k"},
        "query": {"type": None},
        "relay": 3,
        "headers": {"webhook-id": ["not", "text"]},
    },
    {"body": "text", "query": [], "relay": None, "headers": None},
    {"body": {"type": BIG}, "query": {"type": BIG, "subject": HUGE}, "relay": HUGE},
    {"body": {"type": 10**5000, "n": float("nan")}, "query": {"type": 1.5}, "relay": True},
    {"body": DEEP, "query": {"type": Text("t")}, "relay": Text("sub")},
    {"body": {"type": function}, "query": {"type": "x"}, "relay": function, "range": 1},
    {"item": {"action": "create", "uuid": "u", "customerid": 3}, "row": {"identifier": "i"}},
    {"item": {"action": ["create"], "uuid": 5}, "row": None, "unfilled": {"a": "{a}"}},
    {"item": {"action": "delete"}, "unfilled": {}, "event": {"data": {"k": "v"}}},
    {"params": {"trigger": "push_click", "event": "e.v"}, "unfilled": 5, "event": {"data": [1, 2]}},
    {"params": {"event": 5}, "event": {"subject": None}, "hook": {"name": "h"}},
]

TEMPLATES = [
    "{{ body }}",
    "{{ body.type }}",
    "{{ body.items }}",
    "{{ body.keys }}",
    "{{ body.pop }}",
    "{{ body.__class__ }}",
    "{{ body.data.orgSlug }}",
    "{{ body[0] }}",
    "{{ body.1.a }}",
    "{{ body[-3] }}",
    "{{ body['type'] }}",
    "{{ body['items'] }}",
    "{{ event.data }}",
    "{{ event.subject }}",
    "{{ hook.name }}",
    "{{ relay }}",
    "{{ range }}",
    "{{ self }}",
    "{{ missing }}",
    "{{ missing.attr }}",
    "{{ 'constant' }}",
    "{{ 75 }}",
    "{{ [1, 'two', relay] }}",
    "{{ {'k': relay} }}",
    "{{ {'k': missing} }}",
    "{{ (relay, 1) }}",
    "{{ query.type | default('generic.webhook.received') }}",
    "{{ query.type | d('fallback') }}",
    "{{ query.type | default('x', true) }}",
    "{{ query.subject | default('') }}",
    "{{ missing | default(relay) }}",
    "{{ missing.deeper | default('') }}",
    "{{ headers['webhook-id'] | default(headers['idempotency-key']) | default('') }}",
    "{{ headers['webhook-id'] | default(headers['idempotency-key']) }}",
    "{{ body if body != {} else query }}",
    "{{ body if missing else query }}",
    "{{ body.type == 'session' }}",
    "{{ body.type != 'session' }}",
    "{{ body.type > 3 }}",
    "{{ 1 < body.type < 10 }}",
    "{{ body.type in ['session', 7] }}",
    "{{ item.action | default('') not in ['create', 'delete'] }}",
    "{{ item.action == 'create' }}",
    "{{ item.customerid | default('') }}",
    "{{ row.identifier }}",
    "{{ unfilled | length > 0 }}",
    "{{ query | unfilled_placeholders }}",
    "{{ relay | upper }}",
    "{{ relay | length }}",
    "{{ missing | length }}",
    "{{ query.type | string }}",
    "{{ body.type | int }}",
    "{{ params.trigger | default('') | dotted == 'push.click' }}",
    "{{ params.event is defined and params.event is string and params.event | dotted != '' }}",
    "{{ not (params.event is defined and params.event is string) }}",
    "{{ missing or relay }}",
    "{{ relay and missing }}",
    "{{ relay or missing }}",
    "generic/{{ relay }}",
    "gmetri/{{ body.data.orgSlug }}/{{ body.data.depSlug }}",
    "{{ item.uuid }}:{{ item.action }}",
    "  {{ relay }}  ",
    "{{- relay -}}",
    "a {{ 'b' }} {{ relay }}",
    "{{ query.subject }} and {{ query.type | default('t') }}",
    "x{{ missing }}y",
]


def jinja_only(source: str) -> templating.Template:
    """The template compiled as it was before shortcuts: every render through Jinja."""
    with (
        mock.patch.object(templating, "shortcut_expression", lambda *args: None),
        mock.patch.object(templating, "shortcut_text", lambda *args: None),
    ):
        return compile_template(source, "field")


def outcome(template: templating.Template, context: dict[str, Any]) -> tuple[str, Any]:
    try:
        value = template.render(context)
    except Exception as exc:
        return "error", (type(exc), str(exc))
    # repr: NaN, Undefined inside a list, a new TemplateReference each time compare as text
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # the repr of 10**5000
    try:
        return "value", (type(value), repr(value))
    finally:
        sys.set_int_max_str_digits(limit)


@pytest.mark.parametrize("source", TEMPLATES)
def test_a_shortcut_renders_what_jinja_renders(source: str) -> None:
    fast, slow = compile_template(source, "field"), jinja_only(source)
    for context in CONTEXTS:
        got, expected = outcome(fast, context), outcome(slow, context)
        assert got == expected, (source, {k: str(v)[:40] for k, v in context.items()})


SHORTCUT = [
    "{{ body }}",
    "{{ event.data }}",
    "{{ x.y.z }}",
    "{{ 'constant' }}",
    "{{ headers['webhook-id'] | default(headers['idempotency-key']) | default('') }}",
    "{{ body if body != {} else query }}",
    "{{ unfilled | length > 0 }}",
    "{{ query | unfilled_placeholders }}",
    "generic/{{ relay }}",
]
NO_SHORTCUT = [
    "{{ dict(query, **body) }}",
    "{{ relay ~ 'x' }}",
    "{{ 2 ** 10 }}",
    "{{ relay[1:] }}",
    "{% for x in body %}{{ x }}{% endfor %}",
    "a {{ 'b' }}",
    "{{ body | map('upper') }}",
    "{{ relay if body }}",
    "{{ loop }}",
    "{{ body | join(',') }}",
]


def shortcut_of(source: str) -> Any:
    expression = templating._single_expression(source)
    if expression is None:
        return templating.shortcut_text(templating.ENV.parse(source), templating.ENV, print)
    parsed = templating.Parser(templating.ENV, expression, state="variable").parse_expression()
    return templating.shortcut_expression(parsed, templating.ENV, print)


@pytest.mark.parametrize("source", SHORTCUT)
def test_the_common_templates_take_the_shortcut(source: str) -> None:
    assert shortcut_of(source) is not None


@pytest.mark.parametrize("source", NO_SHORTCUT)
def test_what_the_subset_lacks_stays_with_jinja(source: str) -> None:
    assert shortcut_of(source) is None


def test_the_output_budget_holds_across_the_parts_of_a_text_template() -> None:
    half = "z" * (MAX_OUTPUT // 2 + 1)
    template = compile_template("{{ a }}{{ b }}", "field")
    with pytest.raises(templating.RenderError, match="characters of output"):
        template.render({"a": half, "b": half})
    assert outcome(template, {"a": half, "b": half}) == outcome(
        jinja_only("{{ a }}{{ b }}"), {"a": half, "b": half}
    )


def test_check_records_lookups_through_jinja() -> None:
    template = compile_template("{{ body.lable | default('') }}", "data.x")
    with templating.recording_lookups() as log:
        assert template.render({"body": {"label": "l"}}) == ""
    assert ("data.x", "lable") in log.missing
