"""Regexes that cannot run away: RE2 for every pattern a template or a connector runs, refused
at compile time when RE2 cannot run it, and a CPU-time budget on every render."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from relayhook.core.connectors import load_connector
from relayhook.core.regex import RegexError, compile_regex
from relayhook.core.templating import (
    RenderError,
    TemplateError,
    compile_template,
    time_budget,
)
from relayhook.errors import ConnectorError

CATASTROPHIC = r"^([a-zA-Z0-9]+)+@example\.com$"  # minutes on `re` for 30 letters and a `!`
SIGNED = Path(__file__).parent / "fixtures" / "signed"


def test_the_catastrophic_pattern_answers_at_once_on_a_long_input() -> None:
    literal = CATASTROPHIC.replace("\\", "\\\\")  # as written in a Jinja string
    template = compile_template("{{ email | regex_search('" + literal + "') }}", "when")
    started = time.perf_counter()
    for length in (25, 30, 40, 5000):
        assert template.render({"email": "a" * length + "!"}) is None
    assert time.perf_counter() - started < 1.0  # `re`: 3.65 s for 25 characters alone
    assert template.render({"email": "amit@example.com"}) == "amit"


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        pytest.param(r"(a)\1", "backreference", id="backreference"),
        pytest.param(r"(?P<x>a)(?P=x)", "named backreference", id="named backreference"),
        pytest.param(r"a(?=b)", "lookahead", id="lookahead"),
        pytest.param(r"a(?!b)", "negative lookahead", id="negative lookahead"),
        pytest.param(r"(?<=a)b", "lookbehind", id="lookbehind"),
        pytest.param(r"(?<!a)b", "negative lookbehind", id="negative lookbehind"),
        pytest.param(r"a++", "possessive", id="possessive"),
        pytest.param(r"a\Z", r"written `\z`", id="\\Z"),
        pytest.param(r"a(", "not a regular expression: missing )", id="a plain mistake"),
    ],
)
def test_what_re2_cannot_run_is_refused_with_the_reason(pattern: str, words: str) -> None:
    with pytest.raises(RegexError) as caught:
        compile_regex(pattern, "auth.pattern")
    assert words in caught.value.message
    assert str(caught.value).startswith("auth.pattern: ")


def test_a_template_pattern_is_refused_when_it_compiles_naming_key_and_line() -> None:
    source = "{{ body.x }}\n{{ body.y | regex_search('(?<=t=)[0-9]+') }}"
    with pytest.raises(TemplateError) as caught:
        compile_template(source, "events[0].when")
    assert caught.value.name == "events[0].when" and caught.value.line == 2
    assert "lookbehind" in caught.value.message and "regex_search" in caught.value.message


def test_a_pattern_made_at_render_time_is_a_render_error() -> None:
    template = compile_template("{{ x | regex_search(p) }}", "body")
    with pytest.raises(RenderError, match="backreference"):
        template.render({"x": "aa", "p": r"(a)\1"})


def test_a_connector_pattern_re2_cannot_run_fails_at_load(tmp_path: Path) -> None:
    text = (
        (SIGNED / "paystream.toml").read_text().replace('"v1=([0-9a-f]+)"', '"(?<=v1=)([0-9a-f]+)"')
    )
    path = tmp_path / "paystream.toml"
    path.write_text(text)
    with pytest.raises(ConnectorError) as caught:
        load_connector(path)
    assert caught.value.key == "auth.pattern" and "lookbehind" in caught.value.message


def test_a_render_past_its_cpu_budget_ends_that_render_only() -> None:
    slow = compile_template(
        "{% for i in range(45000) %}{{ i | string | length }}{% endfor %}", "body"
    )
    quick = compile_template("{{ 1 + 1 }}", "quick")
    with time_budget(0.01):
        started = time.thread_time()
        with pytest.raises(RenderError, match="CPU time budget"):
            slow.render({})
        assert time.thread_time() - started < 0.5
    assert quick.render({}) == 2  # the next render has its own budget
    assert len(slow.render({})) > 0  # outside the block: the default budget is enough
