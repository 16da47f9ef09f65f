"""The template language: native types, strings, constants, errors, the sandbox, the filters."""

from __future__ import annotations

import time
from typing import Any

import pytest

from relayhook.core.templating import (
    RenderError,
    TemplateError,
    compile_template,
    dotted,
    epoch_ms,
    epoch_s,
)
from relayhook.core.values import compile_value

ROW = {
    "identifier": "amit@gmetri.com",
    "score": 75,
    "score_text": "75",
    "done": True,
    "tags": ["a", "b"],
    "variables": {"score": 100, "quizCompleted": True},
    "nothing": None,
    "ratio": 0.5,
}
CONTEXT = {"row": ROW, "relay": "prod"}


def render(source: str, context: dict[str, Any] | None = None) -> Any:
    return compile_template(source, "data").render(CONTEXT if context is None else context)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("{{ row.variables }}", {"score": 100, "quizCompleted": True}, id="dict"),
        pytest.param("{{ row.score }}", 75, id="int"),
        pytest.param("{{ row.done }}", True, id="bool"),
        pytest.param("{{ row.tags }}", ["a", "b"], id="list"),
        pytest.param("{{ row.ratio }}", 0.5, id="float"),
        pytest.param("{{ row.nothing }}", None, id="null"),
        pytest.param("{{ row.score_text }}", "75", id="a numeric string stays a string"),
        pytest.param("{{ '007' }}", "007", id="a string literal stays a string"),
        pytest.param("{{ row['score'] }}", 75, id="subscript"),
        pytest.param("{{ row.score + 1 }}", 76, id="arithmetic"),
        pytest.param(
            "{{ {'id': row.identifier, 'n': row.score} }}",
            {"id": "amit@gmetri.com", "n": 75},
            id="dict literal",
        ),
        pytest.param("  {{ row.score }}\n", 75, id="surrounding whitespace"),
        pytest.param("{{- row.score -}}", 75, id="whitespace control"),
        pytest.param("{{ row.variables.quizCompleted }}", True, id="nested path"),
        pytest.param("{{ row.missing | default(3) }}", 3, id="filter on a missing key"),
    ],
)
def test_a_single_expression_keeps_its_native_type(source: str, expected: Any) -> None:
    result = render(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("user {{ row.identifier }}", "user amit@gmetri.com", id="text and expression"),
        pytest.param("{{ row.score }}{{ row.score }}", "7575", id="two expressions"),
        pytest.param("{{ row.score }} points", "75 points", id="number then text"),
        pytest.param("gmetri/{{ relay }}/{{ row.score }}", "gmetri/prod/75", id="path"),
        pytest.param("{% if row.done %}done{% else %}open{% endif %}", "done", id="a statement"),
        pytest.param("{% for t in row.tags %}{{ t }},{% endfor %}", "a,b,", id="a loop"),
    ],
)
def test_a_mixed_template_renders_a_string(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("gmetri.rule.triggered", id="text"),
        pytest.param("", id="empty"),
        pytest.param("curly { braces } alone", id="single braces"),
    ],
)
def test_a_string_without_template_syntax_is_a_constant(source: str) -> None:
    template = compile_template(source, "type")
    assert template.is_constant
    assert template.render({}) == source


def test_a_table_of_templates_renders_each_value() -> None:
    value = compile_value(
        {"rule": "{{ row.score }}", "who": ["{{ row.done }}", "id {{ row.identifier }}", 5]},
        "data",
    )
    assert value.render(CONTEXT) == {"rule": 75, "who": [True, "id amit@gmetri.com", 5]}


@pytest.mark.parametrize(
    ("source", "words"),
    [
        pytest.param("{{ nope }}", ["'nope' is undefined"], id="undefined name"),
        pytest.param("x {{ nope }}", ["'nope' is undefined"], id="undefined name in a string"),
        pytest.param("{{ row.missing }}", ["no attribute 'missing'"], id="missing key"),
        pytest.param("{{ row.score.x }}", ["no attribute 'x'"], id="attribute of a number"),
        pytest.param("{{ row.nothing.x }}", ["no attribute 'x'"], id="attribute of null"),
        pytest.param("{{ 1 / 0 }}", ["division by zero"], id="division by zero"),
        pytest.param("{{ row.score + 'a' }}", ["unsupported operand"], id="type error"),
    ],
)
def test_render_errors_name_the_template(source: str, words: list[str]) -> None:
    with pytest.raises(RenderError) as caught:
        compile_template(source, "events[0].subject").render(CONTEXT)
    assert caught.value.name == "events[0].subject"
    assert str(caught.value).startswith("events[0].subject: ")
    for word in words:
        assert word in str(caught.value)


def test_a_render_error_in_a_table_names_the_nested_key() -> None:
    value = compile_value({"a": {"b": ["x", "{{ oops }}"]}}, "data")
    with pytest.raises(RenderError) as caught:
        value.render({})
    assert caught.value.name == "data.a.b[1]"


@pytest.mark.parametrize(
    ("source", "line"),
    [
        pytest.param("{{ row.identifier }", 1, id="unclosed expression"),
        pytest.param("{{ }}", 1, id="empty expression"),
        pytest.param("{{ a b }}", 1, id="two names"),
        pytest.param("line one\nline two {{ x", 2, id="unterminated on line 2"),
        pytest.param("a\nb\n{% if %}", 3, id="empty if on line 3"),
        pytest.param("{{ x }}\n{{ y ) }}", 2, id="second expression"),
        pytest.param("{% for x in y %}", 1, id="unclosed for"),
        pytest.param("{{ a\n | default(1)\n | + }}", 3, id="single expression over lines"),
        pytest.param("{{\n\n a ) }}", 3, id="single expression after blank lines"),
        pytest.param("\n\n{{ a ) }}", 3, id="single expression after leading newlines"),
    ],
)
def test_compile_errors_give_the_line(source: str, line: int) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(source, "events[0].data")
    assert caught.value.name == "events[0].data"
    assert caught.value.line == line
    assert str(caught.value).startswith("events[0].data: ")


def test_a_compile_error_in_a_table_names_the_nested_key() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_value({"a": {"b": ["x", "{{ oops }"]}}, "data")
    assert caught.value.name == "data.a.b[1]"


SANDBOX_ATTACKS = [
    pytest.param("{{ ''.__class__.__mro__ }}", id="dunder attributes"),
    pytest.param("{{ cycler.__init__.__globals__ }}", id="function globals"),
    pytest.param("{{ joiner.__init__ }}", id="a global's constructor"),
    pytest.param("{{ 'a'|attr('format') }}", id="attr filter to a method"),
    pytest.param("x{{ 'a'.format }}", id="a method in a string"),
    pytest.param("{{ 'A' * 10**9 }}", id="string multiplication"),
    pytest.param("{{ [1] * 10**8 }}", id="list multiplication"),
    pytest.param("{{ 2 ** 100000 }}", id="huge power"),
    pytest.param("{{ 1.5 ** 100000 }}", id="huge float power"),
    pytest.param("{{ (2 ** 4000) * (2 ** 4000) }}", id="huge product"),
    pytest.param("{{ ('a' * 1000000) + ('b' * 1000000) }}", id="huge concatenation with +"),
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        id="nested range loops",
    ),
    pytest.param("{{ range(10**9) | list }}", id="huge range"),
    pytest.param("{{ [].append(1) }}", id="list mutation"),
    pytest.param("{% set x = {} %}{{ x.update(a=1) }}", id="dict mutation"),
    pytest.param("{{ lipsum(10**6) }}", id="lipsum is gone"),
]


@pytest.mark.parametrize("source", SANDBOX_ATTACKS)
def test_sandbox_attacks_raise_render_error_quickly(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RenderError):
        compile_template(source, "data").render({})
    assert time.perf_counter() - started < 1.0


# Each of these makes a 10-million-character string (ten times the limit `*` and `+` enforce).
# They are kept moderate so that a sandbox that lets them through fails the test, not the machine:
# at 10**9 or 10**11 characters the same templates exhaust memory.
OUTPUT_SIZE_ATTACKS = [
    pytest.param(
        "{% set a = 'x' * 1000000 %}{{ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a }}",
        id="concatenation with ~",
    ),
    pytest.param("{{ range(10) | join('y' * 1000000) }}", id="join with a long separator"),
    pytest.param("{{ 'x' | center(10**7) }}", id="center"),
    pytest.param("{{ 'x' | indent(10**7, true) }}", id="indent"),
    pytest.param("{{ '{:>10000000}'.format(1) }}", id="str.format width"),
    pytest.param("{{ ('x' * 1000) | replace('x', 'y' * 10000) }}", id="replace"),
    pytest.param(
        "{% for i in range(10) %}{{ 'x' * 1000000 }}{% endfor %}", id="a loop accumulating output"
    ),
    pytest.param("{{ ('{0}' * 30).format('x' * 1000000) }}", id="str.format repeating an arg"),
    pytest.param("{{ ('\t' * 20).expandtabs(1000000) }}", id="expandtabs"),
    pytest.param("{{ ('a' * 20).translate({97: 'b' * 1000000}) }}", id="translate"),
    pytest.param("{{ ['a' * 1000000] * 20 }}", id="a list of big strings multiplied"),
    pytest.param(
        "{% set a = 'x' * 1000000 %}{{ '%s%s%s%s%s%s%s%s%s%s' | format(a, a, a, a, a, "
        "a, a, a, a, a) }}",
        id="the format filter",
    ),
]


@pytest.mark.parametrize("source", OUTPUT_SIZE_ATTACKS)
def test_sandbox_bounds_the_size_of_any_output(source: str) -> None:
    with pytest.raises(RenderError):
        compile_template(source, "data").render({})


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{% include 'other.html' %}", id="include"),
        pytest.param("{% import 'macros.html' as m %}", id="import"),
        pytest.param("{% from 'macros.html' import m %}", id="from import"),
        pytest.param("x\n{% extends 'base.html' %}", id="extends"),
    ],
)
def test_templates_cannot_load_other_templates(source: str) -> None:
    # There is no loader; the connector fails when it loads, not at the first request.
    with pytest.raises(TemplateError, match="include, import and extends are not available"):
        compile_template(source, "data")


def test_a_loop_over_a_long_string_is_bounded() -> None:
    started = time.perf_counter()
    with pytest.raises(RenderError, match="loop iterations"):
        compile_template(
            "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{% endfor %}{% endfor %}",
            "data",
        ).render({})
    assert time.perf_counter() - started < 1.0


def test_dict_keys_come_before_dict_methods() -> None:
    # Webhook payloads often have `items`, `keys` or `values`; they mean the payload's data.
    assert compile_template("{{ body.items }}", "d").render({"body": {"items": [1]}}) == [1]
    keys = compile_template("n={{ body.keys|length }}", "d")
    assert keys.render({"body": {"keys": "ab"}}) == "n=2"


def test_the_iteration_budget_is_per_render() -> None:
    template = compile_template("{{ range(60000) | list | length }}", "data")
    assert template.render({}) == 60000
    assert template.render({}) == 60000  # the previous render's loop is not charged again


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("{{ 123456 | epoch_ms }}", "1970-01-01T00:02:03.456Z", id="epoch_ms"),
        pytest.param(
            "{{ '1714564800000' | epoch_ms }}", "2024-05-01T12:00:00.000Z", id="epoch_ms from text"
        ),
        pytest.param("{{ 1714564800 | epoch_s }}", "2024-05-01T12:00:00.000Z", id="epoch_s"),
        pytest.param(
            "{{ 1714564800.25 | epoch_s }}",
            "2024-05-01T12:00:00.250Z",
            id="epoch_s with a fraction",
        ),
        pytest.param("{{ 'Level Completed' | dotted }}", "level.completed", id="dotted words"),
        pytest.param("{{ 'levelCompleted' | dotted }}", "level.completed", id="dotted camelCase"),
        pytest.param("{{ 'level_completed' | dotted }}", "level.completed", id="dotted snake"),
        pytest.param("{{ 'opt-in submit' | dotted }}", "opt.in.submit", id="dotted opt-in"),
        pytest.param("{{ '  !! ' | dotted }}", "", id="dotted of punctuation"),
    ],
)
def test_filters(source: str, expected: str) -> None:
    assert render(source) == expected


def test_filters_are_plain_functions_too() -> None:
    assert epoch_ms(0) == "1970-01-01T00:00:00.000Z"
    assert epoch_s(0) == "1970-01-01T00:00:00.000Z"
    assert dotted("High Score") == "high.score"


def test_a_bad_filter_input_is_a_render_error() -> None:
    with pytest.raises(RenderError):
        render("{{ 'soon' | epoch_ms }}")
