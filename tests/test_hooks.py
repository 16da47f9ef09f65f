"""Hooks as written in the config: validation errors (file, key, line), presets, placeholders
and event type patterns. Pure: no server, no store."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from relayhook.core.hooks import (
    PRESETS_DIR,
    build_hooks,
    expand_placeholders,
    merge_preset,
)
from relayhook.core.tomlpos import line_of, locate_keys
from relayhook.errors import HookError

URL = "https://receiver.example/in"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SHIPPED_PRESETS = sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))


def build_toml(text: str, where: str = "relayhook.toml", **kwargs: Any) -> dict[str, Any]:
    """Hooks from a config text, with lines found the way the settings find them."""
    lines = locate_keys(text)
    raw = tomllib.loads(text)["hooks"]
    return build_hooks(raw, where, locate=lambda path: line_of(lines, path), **kwargs)


def hook(**keys: Any) -> dict[str, Any]:
    return {"name": "h", "events": ["*"], "url": URL, **keys}


# -- validation: each error names the file, the key path and the line -------------------------

HEAD = f'[[hooks]]\nname = "h"\nevents = ["*"]\nurl = "{URL}"\n'  # lines 1-4


@pytest.mark.parametrize(
    ("extra", "key", "line", "message"),
    [
        pytest.param('metod = "POST"', "metod", 5, "unknown key (a typo?)", id="unknown key"),
        pytest.param(
            'method = "HEAD"',
            "method",
            5,
            "'GET', 'POST', 'PUT', 'PATCH' or 'DELETE'",
            id="bad method",
        ),
        pytest.param(
            'method = "GET"\nbody = { a = "b" }',
            "body",
            6,
            "a GET request has no body",
            id="GET with a body",
        ),
        pytest.param(
            'headers = { Host = "evil.example" }',
            "headers.Host",
            5,
            "'Host' cannot be set by a hook",
            id="Host header",
        ),
        pytest.param(
            'headers = { "Content-Length" = "3" }',
            "headers.Content-Length",
            5,
            "'Content-Length' cannot be set by a hook",
            id="Content-Length header",
        ),
        pytest.param(
            'headers = { "transfer-encoding" = "chunked" }',
            "headers.transfer-encoding",
            5,
            "cannot be set by a hook",
            id="Transfer-Encoding header, any case",
        ),
        pytest.param(
            'headers = { CONNECTION = "close" }',
            "headers.CONNECTION",
            5,
            "cannot be set by a hook",
            id="Connection header, upper case",
        ),
        pytest.param(
            'headers = { "X Bad" = "1" }',
            "headers.X Bad",
            5,
            "'X Bad' cannot be set by a hook",
            id="header name with a space",
        ),
        pytest.param(
            'headers = { "X:Y" = "1" }',
            "headers.X:Y",
            5,
            "cannot be set by a hook",
            id="header name with a colon",
        ),
        pytest.param(
            'headers = { "Ümlaut" = "1" }',
            "headers.Ümlaut",
            5,
            "cannot be set by a hook",
            id="header name not ASCII",
        ),
        pytest.param(
            "retry = { schedule = [0, 5, -1] }",
            "retry",
            5,
            "none may be negative",
            id="negative retry wait",
        ),
        pytest.param(
            "retry = { schedule = [] }",
            "retry.schedule",
            5,
            "at least 1 item",
            id="empty retry schedule",
        ),
        pytest.param(
            "rate_limit = { requests = 100 }",
            "rate_limit",
            5,
            "rate_limit.requests and rate_limit.window go together",
            id="rate limit requests without a window",
        ),
        pytest.param(
            "rate_limit = { window = 10 }",
            "rate_limit",
            5,
            "rate_limit.requests and rate_limit.window go together",
            id="rate limit window without requests",
        ),
        pytest.param(
            "rate_limit = { per_second = 0 }",
            "rate_limit.per_second",
            5,
            "greater than 0",
            id="zero rate",
        ),
        pytest.param(
            'when = "{{ event.data.a }} and {{ event.data.b }}"',
            "when",
            5,
            "a condition is one {{ expression }}",
            id="when: two expressions",
        ),
        pytest.param(
            'when = "true"', "when", 5, "a condition is one {{ expression }}", id="when: a constant"
        ),
        pytest.param(
            'when = "{% if x %}1{% endif %}"',
            "when",
            5,
            "a condition is one {{ expression }}",
            id="when: a statement",
        ),
        pytest.param(
            'preset = "zappier"', "preset", 5, "no preset 'zappier' (known: ", id="unknown preset"
        ),
        pytest.param(
            'preset = "standard-webhooks"',
            "preset",
            5,
            "preset 'standard-webhooks' needs signing_secret",
            id="standard-webhooks without a signing secret",
        ),
        pytest.param(
            "concurrency = 0", "concurrency", 5, "greater than or equal to 1", id="no concurrency"
        ),
        pytest.param(
            "timeout = 301", "timeout", 5, "less than or equal to 300", id="timeout too long"
        ),
        pytest.param(
            'body = "{{ event.subject "',
            "body",
            5,
            "unexpected end of template",
            id="body does not compile",
        ),
        pytest.param(
            'body_format = "form"\nbody = "a={{ event.subject }}"',
            "body",
            6,
            "a form body is a table of fields",
            id="form body not a table",
        ),
    ],
)
def test_an_invalid_hook_names_file_key_and_line(
    extra: str, key: str, line: int, message: str
) -> None:
    with pytest.raises(HookError) as caught:
        build_toml(HEAD + extra + "\n")
    text = str(caught.value)
    assert text.startswith(f"relayhook.toml:hooks[0].{key}:{line}: "), text
    assert message in text


def test_a_hook_without_a_url_names_the_key() -> None:
    with pytest.raises(HookError, match=r"^c\.toml:hooks\[0\]\.url:0: required key is missing"):
        build_hooks([{"name": "h", "events": ["*"]}], "c.toml")


def test_two_hooks_with_one_name_name_the_second() -> None:
    text = HEAD + "\n" + HEAD  # the second [[hooks]] starts on line 6
    with pytest.raises(HookError) as caught:
        build_toml(text)
    assert str(caught.value) == "relayhook.toml:hooks[1].name:7: two hooks are named 'h'"


def test_the_index_is_the_failing_hooks() -> None:
    hooks = [hook(name="a"), hook(name="b"), hook(name="c", method="TRACE")]
    with pytest.raises(HookError, match=r"^cfg:hooks\[2\]\.method:42: "):
        build_hooks(hooks, "cfg", locate=lambda path: 42)


def test_locate_is_asked_for_the_full_key_path() -> None:
    asked: list[tuple[str | int, ...]] = []

    def locate(path: tuple[str | int, ...]) -> int:
        asked.append(tuple(path))
        return 3

    with pytest.raises(HookError):
        build_hooks([hook(), hook(name="x", headers={"Host": "h"})], "cfg", locate=locate)
    assert asked == [("hooks", 1, "headers", "Host")]


def test_a_header_name_with_a_dot_is_one_key_in_the_error() -> None:
    # `X.Custom` is a valid header name; an error in its template is about that one header.
    asked: list[tuple[str | int, ...]] = []

    def locate(path: tuple[str | int, ...]) -> int:
        asked.append(tuple(path))
        return 5

    with pytest.raises(HookError) as caught:
        build_hooks([hook(headers={"X.Custom": "{{ event.subject }"})], "cfg", locate=locate)
    assert asked == [("hooks", 0, "headers", "X.Custom")]
    assert str(caught.value).startswith("cfg:hooks[0].headers.X.Custom:5: ")


# -- presets ----------------------------------------------------------------------------------


def test_the_presets_are_the_documented_eight() -> None:
    assert SHIPPED_PRESETS == [
        "cloudevents",
        "hubspot",
        "make",
        "n8n",
        "pabbly",
        "slack",
        "standard-webhooks",
        "zapier",
    ]


@pytest.mark.parametrize("preset", SHIPPED_PRESETS)
def test_every_shipped_preset_compiles_with_a_url(preset: str) -> None:
    raw = hook(preset=preset)
    if preset == "standard-webhooks":
        raw["signing_secret"] = SECRET
    built = build_hooks([raw], "cfg")["h"]
    assert built.method == "POST"
    assert built.body is not None
    assert built.url.render({}) == URL


@pytest.mark.parametrize("preset", SHIPPED_PRESETS)
def test_every_shipped_preset_documents_itself(preset: str) -> None:
    text = (PRESETS_DIR / f"{preset}.toml").read_text(encoding="utf-8")
    comment = [line for line in text.splitlines() if line.startswith("#")]
    assert any("Sends:" in line for line in comment), "say what it sends"
    assert len(comment) >= 3


@pytest.fixture
def presets_dir(tmp_path: Path) -> Path:
    (tmp_path / "base.toml").write_text(
        'requires = ["url"]\n'
        "[hook]\n"
        'method = "PUT"\n'
        "timeout = 5\n"
        'headers = { "X-Preset" = "p", "X-Both" = "preset" }\n'
        'params = { source = "relayhook", both = "preset" }\n'
        "rate_limit = { per_second = 25 }\n",
        encoding="utf-8",
    )
    return tmp_path


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param(
            {},
            {
                "method": "PUT",
                "timeout": 5,
                "rate_limit": {"per_second": 25},
                "headers": {"X-Preset": "p", "X-Both": "preset"},
                "params": {"source": "relayhook", "both": "preset"},
            },
            id="the preset's defaults",
        ),
        pytest.param(
            {"method": "PATCH", "timeout": 2}, {"method": "PATCH", "timeout": 2}, id="hook keys win"
        ),
        pytest.param(
            {"headers": {"X-Both": "hook", "X-Hook": "h"}},
            {"headers": {"X-Preset": "p", "X-Both": "hook", "X-Hook": "h"}},
            id="headers merge key by key",
        ),
        pytest.param(
            {"params": {"both": "hook", "extra": "e"}},
            {"params": {"source": "relayhook", "both": "hook", "extra": "e"}},
            id="params merge key by key",
        ),
        pytest.param(
            {"rate_limit": {"requests": 10, "window": 60}},
            {"rate_limit": {"requests": 10, "window": 60}},
            id="a table other than headers and params is replaced whole",
        ),
    ],
)
def test_a_hook_is_merged_over_its_preset(
    presets_dir: Path, keys: dict[str, Any], expected: dict[str, Any]
) -> None:
    merged = merge_preset(hook(preset="base", **keys), presets_dir)
    for key, value in expected.items():
        assert merged[key] == value
    assert merged["url"] == URL and merged["name"] == "h"


def test_a_merged_hook_compiles_with_the_merged_values(presets_dir: Path) -> None:
    built = build_hooks(
        [hook(preset="base", headers={"X-Both": "hook"})], "cfg", presets_dir=presets_dir
    )["h"]
    assert built.method == "PUT"
    assert built.timeout == 5
    assert {name: t.render({}) for name, t in built.headers.items()} == {
        "X-Preset": "p",
        "X-Both": "hook",
    }
    assert built.rate_limit is not None and built.rate_limit.per_second == 25


def test_a_preset_names_the_keys_it_requires(presets_dir: Path) -> None:
    raw = {"name": "h", "events": ["*"], "preset": "base"}
    with pytest.raises(HookError, match=r"^cfg:hooks\[0\]\.preset:0: preset 'base' needs url$"):
        build_hooks([raw], "cfg", presets_dir=presets_dir)


def test_a_hook_without_a_preset_gets_the_defaults() -> None:
    built = build_hooks([hook()], "cfg")["h"]
    assert (built.method, built.body_format, built.timeout, built.concurrency, built.ordered) == (
        "POST",
        "json",
        10.0,
        4,
        False,
    )
    assert built.retry.schedule == [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert built.rate_limit is None and built.when is None and built.signing_secret is None


# -- placeholders -----------------------------------------------------------------------------

CONTEXT = {"event": {"subject": "amit@gmetri.com", "id": "e 1", "data": {"n": 7}}}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "https://x/{event.subject}",
            "https://x/amit%40gmetri.com",
            id="placeholder, url-encoded",
        ),
        pytest.param("https://x/{ event.id }", "https://x/e%201", id="spaces inside braces"),
        pytest.param("https://x/{event.data.n}/", "https://x/7/", id="a number"),
        pytest.param(
            "https://x/{{ event.subject }}",
            "https://x/amit@gmetri.com",
            id="{{ }} untouched (not encoded)",
        ),
        pytest.param(
            "https://x/{{event.subject}}",
            "https://x/amit@gmetri.com",
            id="{{}} without spaces untouched",
        ),
        pytest.param(
            "https://x/?q={event.subject}&id={{ event.id }}",
            "https://x/?q=amit%40gmetri.com&id=e 1",
            id="both in one URL",
        ),
        pytest.param("https://x/{1}", "https://x/{1}", id="not a name: left alone"),
    ],
)
def test_placeholders_expand_to_urlencoded_expressions(url: str, expected: str) -> None:
    built = build_hooks([hook(url=url)], "cfg")["h"]
    assert built.url.render(CONTEXT) == expected


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param("a/b", id="a slash"),
        pytest.param("../../admin", id="dot segments"),
        pytest.param("x?admin=1#frag", id="query and fragment"),
        pytest.param("a b&c=d", id="space, ampersand, equals"),
    ],
)
def test_a_placeholder_value_stays_one_path_segment(subject: str) -> None:
    # `{event.subject}` is "URL-encoded": a subject from the provider must not move the request
    # to another path of the receiver (`../../admin`), so `/` is encoded like `?` and `#`.
    built = build_hooks([hook(url="https://crm.example/contacts/{event.subject}/notes")], "cfg")[
        "h"
    ]
    url = built.url.render({"event": {"subject": subject}})
    prefix, _, rest = url.partition("https://crm.example/contacts/")
    assert prefix == ""
    _segment, _, tail = rest.partition("/")
    assert tail == "notes", url
    assert "?" not in url and "#" not in url


def test_expand_placeholders_rewrites_only_single_braces() -> None:
    assert expand_placeholders("https://x/{a.b}/{{ c }}") == (
        "https://x/{{ (a.b) | path_segment }}/{{ c }}"
    )


# -- event type patterns and relays -----------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "relays", "event_type", "relay", "matches"),
    [
        pytest.param(["gmetri.rule.*"], [], "gmetri.rule.triggered", "r", True, id="prefix *"),
        pytest.param(["gmetri.rule.*"], [], "gmetri.rule.a.b", "r", True, id="* crosses dots"),
        pytest.param(
            ["gmetri.rule.*"], [], "gmetri.variables.changed", "r", False, id="another family"
        ),
        pytest.param(["gmetri.rule.*"], [], "gmetri.rule", "r", False, id="the bare prefix"),
        pytest.param(
            ["gmetri.rule.*"], [], "xgmetri.rule.triggered", "r", False, id="anchored at the start"
        ),
        pytest.param(["*"], [], "anything.at.all", "r", True, id="star takes all"),
        pytest.param(["a.b"], [], "a.b", "r", True, id="exact"),
        pytest.param(["a.b"], [], "a.bc", "r", False, id="exact is whole"),
        pytest.param(["a.b"], [], "axb", "r", False, id="a dot is a dot"),
        pytest.param(["*.created"], [], "synthesisvr.session.created", "r", True, id="suffix *"),
        pytest.param(["x.y", "a.*"], [], "a.z", "r", True, id="any of several"),
        pytest.param(["*"], ["prod"], "t", "prod", True, id="listed relay"),
        pytest.param(["*"], ["prod"], "t", "staging", False, id="other relay"),
        pytest.param(["*"], ["prod", "staging"], "t", "staging", True, id="one of the relays"),
        pytest.param(["a.*"], ["prod"], "b.c", "prod", False, id="relay matches, type not"),
    ],
)
def test_a_hook_matches_event_types_and_relays(
    events: list[str], relays: list[str], event_type: str, relay: str, matches: bool
) -> None:
    built = build_hooks([hook(events=events, relays=relays)], "cfg")["h"]
    assert built.matches(event_type, relay) is matches


def test_a_pattern_is_not_a_regex() -> None:
    built = build_hooks([hook(events=["a+b.(c)"])], "cfg")["h"]
    assert built.matches("a+b.(c)", "r")
    assert not built.matches("aab.c", "r")
    assert all(isinstance(p, re.Pattern) for p in built.patterns)


def test_the_stored_spec_holds_no_literal_signing_secret() -> None:
    literal = build_hooks([hook(signing_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")], "cfg")[
        "h"
    ]
    reference = build_hooks([hook(signing_secret="{{ secrets.signing }}")], "cfg")["h"]
    assert literal.stored_spec()["signing_secret"] == "[redacted]"
    assert "MfKQ9r8" not in repr(literal.stored_spec())
    assert reference.stored_spec()["signing_secret"] == "{{ secrets.signing }}"
    assert literal.stored_spec()["name"] == "h"


# -- URLs refused at load rather than altered (issue 7, item 4) --------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        pytest.param("https://x.example/a\r\nHost: evil", "holds a CR at position 19", id="CR LF"),
        pytest.param("https://x.example/a b", "holds a space at position 19", id="a space"),
        pytest.param(" https://x.example/", "holds a space at position 0", id="leading space"),
        pytest.param("https://x.example/\n", "holds an LF", id="trailing LF"),
        pytest.param("https://x.example/\t{{ event.id }}", "holds a tab", id="beside a template"),
        pytest.param("https://x.example/\x00", "control character", id="NUL"),
    ],
)
def test_a_url_with_a_space_or_control_character_is_refused_at_its_key(
    url: str, words: str
) -> None:
    with pytest.raises(HookError) as caught:
        build_hooks([hook(url=url)], "relayhook.toml")
    assert caught.value.key == "hooks[0].url"
    assert words in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://x.example/{{ event.subject | urlencode }}", id="spaces in {{ }}"),
        pytest.param("https://x.example/{ event.subject }", id="spaces in a placeholder"),
        pytest.param("https://x.example/{% if true %}a{% endif %}", id="spaces in {% %}"),
        pytest.param("https://x.example/p?q=a%20b", id="an encoded space"),
    ],
)
def test_spaces_inside_template_syntax_are_not_refused(url: str) -> None:
    assert build_hooks([hook(url=url)], "relayhook.toml")["h"].url.source


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        pytest.param("https://user:pw@x.example/", {"Authorization": "Bearer t"}, id="both"),
        pytest.param(
            "https://user@x.example/",
            {"authorization": "Basic dTpw"},
            id="a user, a lower-case header",
        ),
        pytest.param(
            "https://{{ secrets.u }}:{{ secrets.p }}@x.example/",
            {"AUTHORIZATION": "{{ secrets.token }}"},
            id="templated credentials",
        ),
    ],
)
def test_url_credentials_and_an_authorization_header_are_refused(
    url: str, headers: dict[str, str]
) -> None:
    with pytest.raises(HookError) as caught:
        build_hooks([hook(url=url, headers=headers)], "relayhook.toml")
    assert caught.value.key == "hooks[0].url"
    assert "a request carries one Authorization" in caught.value.message


def test_url_credentials_alone_and_an_at_sign_in_the_path_are_accepted() -> None:
    build_hooks([hook(url="https://user:pw@x.example/")], "relayhook.toml")
    build_hooks(
        [hook(url="https://x.example/contacts/a@b.example", headers={"Authorization": "Bearer t"})],
        "relayhook.toml",
    )
