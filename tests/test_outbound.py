"""The exact request a hook makes for an event: method, URL, headers, body bytes, signature, the
record kept in the history and the cURL form. Pure: `render_request` does no I/O."""

from __future__ import annotations

import base64
import json
import shlex
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
from cloudevents.v1.http import from_http

from relayhook import __version__
from relayhook.core import outbound
from relayhook.core.events import Event
from relayhook.core.hooks import Hook, build_hooks
from relayhook.core.outbound import OutboundRequest, render_request, should_deliver, sign
from relayhook.core.templating import RenderError

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z
DELIVERY_ID = "dlv_2hq8TZ0d"
URL = "https://receiver.example/hooks/catch/123/"
UA = ("user-agent", f"Relayhook/{__version__}")
JSON_CT = ("content-type", "application/json")
WEBHOOK_ID = ("webhook-id", DELIVERY_ID)
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRETS = {"hubspot_token": "pat-na1-0f3c9a", "signing": WHSEC}

DATA = {"score": 100, "quizCompleted": True, "rule": {"name": "Quiz done"}}
EVENT = Event(
    id="evt_1",
    source="https://gmetri.com",
    type="gmetri.rule.triggered",
    subject="amit@gmetri.com",
    time="2024-05-01T12:00:00.000Z",
    data=DATA,
    relay="gmetri-prod",
)
CLOUDEVENT = {
    "specversion": "1.0",
    "id": "evt_1",
    "source": "https://gmetri.com",
    "type": "gmetri.rule.triggered",
    "subject": "amit@gmetri.com",
    "time": "2024-05-01T12:00:00.000Z",
    "datacontenttype": "application/json",
    "data": DATA,
    "relay": "gmetri-prod",
}
FLAT = {
    "event_id": "evt_1",
    "event_type": "gmetri.rule.triggered",
    "subject": "amit@gmetri.com",
    "time": "2024-05-01T12:00:00.000Z",
    "source": "https://gmetri.com",
    "relay": "gmetri-prod",
    "data__score": 100,
    "data__quizCompleted": True,
    "data__rule__name": "Quiz done",
}
HOSTILE = 'say "hi" \\ back\nslash</script><!-- \u2028 é 😀 \x00 end'


def make_hook(**keys: Any) -> Hook:
    raw = {"name": "h", "events": ["*"], "url": URL, **keys}
    return build_hooks([raw], "cfg")["h"]


def render(
    hook: Hook, event: Event = EVENT, secrets: dict[str, str] | None = None, now: float = NOW
) -> OutboundRequest:
    return render_request(
        hook,
        event,
        delivery_id=DELIVERY_ID,
        secrets=SECRETS if secrets is None else secrets,
        now=now,
    )


def with_data(data: Any, subject: str | None = "amit@gmetri.com") -> Event:
    return Event(
        id="evt_2",
        source="https://s.example",
        type="t",
        subject=subject,
        time="2024-05-01T12:00:00.000Z",
        data=data,
        relay="r",
    )


def compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# -- presets against one event ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "url", "headers", "body"),
    [
        pytest.param("zapier", URL, (UA, JSON_CT, WEBHOOK_ID), FLAT, id="zapier"),
        pytest.param("pabbly", URL, (UA, JSON_CT, WEBHOOK_ID), FLAT, id="pabbly"),
        pytest.param("make", URL, (UA, JSON_CT, WEBHOOK_ID), CLOUDEVENT, id="make"),
        pytest.param("n8n", URL, (UA, JSON_CT, WEBHOOK_ID), CLOUDEVENT, id="n8n"),
        pytest.param(
            "cloudevents",
            URL,
            (UA, ("content-type", "application/cloudevents+json; charset=utf-8"), WEBHOOK_ID),
            CLOUDEVENT,
            id="cloudevents",
        ),
        pytest.param(
            "hubspot",
            "https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert",
            (UA, JSON_CT, ("authorization", "Bearer pat-na1-0f3c9a"), WEBHOOK_ID),
            {
                "inputs": [
                    {
                        "idProperty": "email",
                        "id": "amit@gmetri.com",
                        "properties": {
                            "score": 100,
                            "quizCompleted": True,
                            "rule_name": "Quiz done",
                        },
                    }
                ]
            },
            id="hubspot",
        ),
        pytest.param(
            "slack",
            URL,
            (UA, JSON_CT, WEBHOOK_ID),
            {
                "text": "gmetri.rule.triggered for amit@gmetri.com: "
                '{"quizCompleted": true, "rule": {"name": "Quiz done"}, "score": 100}'
            },
            id="slack",
        ),
    ],
)
def test_a_preset_renders_the_exact_request(
    preset: str, url: str, headers: tuple[tuple[str, str], ...], body: Any
) -> None:
    keys: dict[str, Any] = {"preset": preset}
    if preset == "hubspot":
        keys["url"] = url
    request = render(make_hook(**keys))
    assert request.method == "POST"
    assert request.url == url
    assert request.headers == headers
    assert request.body == compact(body)


def test_the_standard_webhooks_preset_renders_type_timestamp_data_and_signs() -> None:
    request = render(make_hook(preset="standard-webhooks", signing_secret=WHSEC))
    assert (request.method, request.url) == ("POST", URL)
    assert request.body == compact(
        {"type": "gmetri.rule.triggered", "timestamp": "2024-05-01T12:00:00.000Z", "data": DATA}
    )
    assert request.headers[:3] == (UA, JSON_CT, WEBHOOK_ID)
    assert request.header("webhook-timestamp") == "1714564800"
    assert request.header("webhook-signature") == sign(
        WHSEC, DELIVERY_ID, "1714564800", request.body
    )


def test_a_cloudevents_request_parses_with_the_cloudevents_package() -> None:
    request = render(make_hook(preset="cloudevents"))
    parsed = from_http(dict(request.headers), request.body)
    assert parsed["id"] == "evt_1"
    assert parsed["type"] == "gmetri.rule.triggered"
    assert parsed["subject"] == "amit@gmetri.com"
    assert parsed["relay"] == "gmetri-prod"
    assert parsed.data == DATA


# -- URL --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        pytest.param(URL, {}, URL, id="a fixed URL"),
        pytest.param(
            "https://crm.example/contacts/{event.subject}",
            {},
            "https://crm.example/contacts/amit@gmetri.com",
            id="placeholder (the client's canonical form keeps @ in a path)",
        ),
        pytest.param(
            "https://x.example/{{ event.data.score }}/{{ relay }}",
            {},
            "https://x.example/100/gmetri-prod",
            id="templates in the path",
        ),
        pytest.param(
            "https://x.example/p",
            {"user": "{{ event.subject }}", "n": "7"},
            "https://x.example/p?user=amit@gmetri.com&n=7",
            id="params appended (the client's canonical form keeps @ in a query)",
        ),
        pytest.param(
            "https://x.example/p?k=1&v=a%20b",
            {"user": "{{ event.subject }}"},
            "https://x.example/p?k=1&v=a%20b&user=amit@gmetri.com",
            id="params after an existing query",
        ),
        pytest.param(
            "https://x.example/p",
            {"tag": "{{ ['a', 'b c'] }}"},
            "https://x.example/p?tag=a&tag=b+c",
            id="a list: repeated params",
        ),
        pytest.param(
            "https://x.example/p",
            {"done": "{{ event.data.quizCompleted }}", "no": "{{ false }}"},
            "https://x.example/p?done=true&no=false",
            id="bools as true/false",
        ),
        pytest.param(
            "https://x.example/p",
            {"gone": "{{ none }}", "n": "{{ 1.5 }}"},
            "https://x.example/p?n=1.5",
            id="none leaves a param out",
        ),
        pytest.param(
            "https://x.example/p",
            {"rule": "{{ event.data.rule }}"},
            "https://x.example/p?rule=%7B%22name%22:%22Quiz+done%22%7D",
            id="a table as compact JSON",
        ),
        pytest.param(
            "https://x.example/p#frag",
            {"a": "1"},
            "https://x.example/p?a=1#frag",
            id="params go before a fragment",
        ),
    ],
)
def test_the_url_is_rendered_with_its_params(
    url: str, params: dict[str, str], expected: str
) -> None:
    assert render(make_hook(url=url, params=params)).url == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        pytest.param(
            "{{ ' https://x.example/p' }}",
            "holds a space at position 0",
            id="a leading space (was trimmed)",
        ),
        pytest.param(
            "https://x.example/{{ 'a b' }}",
            "holds a space at position 19",
            id="a space in a rendered path (was encoded)",
        ),
        pytest.param("https://x.example/{{ 'a\\r\\nb' }}", "holds a CR", id="CR LF (was dropped)"),
        pytest.param("https://x.example/p{{ '\\t' }}", "holds a tab", id="a tab"),
    ],
)
def test_a_rendered_url_with_a_space_or_control_character_is_refused(url: str, words: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(make_hook(url=url))
    assert caught.value.name == "url"
    assert words in str(caught.value)


def test_rendered_url_credentials_beside_an_authorization_header_are_refused() -> None:
    hook = make_hook(url="https://{{ secrets.hubspot_token }}@x.example/p", headers={"X-Key": "1"})
    assert render(hook).url.startswith("https://pat-na1-0f3c9a@x.example/")
    both = make_hook(
        url="{{ 'https://u:p@x.example/' }}",
        headers={"Authorization": "Bearer {{ secrets.hubspot_token }}"},
    )
    with pytest.raises(RenderError, match="a request carries one Authorization"):
        render(both)


@pytest.mark.parametrize(
    "subject",
    [pytest.param("../../admin", id="dot segments"), pytest.param("a/b", id="a slash")],
)
def test_a_placeholder_cannot_change_the_path(subject: str) -> None:
    # The provider chooses the subject; `{event.subject}` must stay within its path segment.
    request = render(
        make_hook(url="https://crm.example/contacts/{event.subject}/notes"),
        with_data({}, subject=subject),
    )
    assert request.url.startswith("https://crm.example/contacts/")
    assert request.url.endswith("/notes")
    assert request.url.count("/") == "https://crm.example/contacts/x/notes".count("/")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://x.example/", id="ftp"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("//x.example/p", id="no scheme"),
        pytest.param("http:///p", id="no host"),
        pytest.param("{{ event.subject }}", id="a template that renders no URL"),
    ],
)
def test_a_url_that_is_not_http_is_a_render_error(url: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(make_hook(url=url))
    assert caught.value.name == "url"
    assert "is not an http:// or https:// URL" in caught.value.message


# -- headers ----------------------------------------------------------------------------------


def test_default_headers_for_a_get_without_a_body() -> None:
    request = render(make_hook(method="GET"))
    assert (request.method, request.body) == ("GET", b"")
    assert request.headers == (UA, WEBHOOK_ID)


def test_hook_headers_are_rendered_lower_cased_and_override_content_type() -> None:
    request = render(
        make_hook(
            headers={
                "Content-Type": "application/vnd.api+json",
                "X-Score": "{{ event.data.score }}",
                "X-Done": "{{ event.data.quizCompleted }}",
                "X-Missing": "{{ event.data.nope | default(none) }}",
                "Authorization": "Bearer {{ secrets.hubspot_token }}",
            }
        )
    )
    assert request.headers == (
        UA,
        ("content-type", "application/vnd.api+json"),
        ("x-score", "100"),
        ("x-done", "true"),
        ("authorization", "Bearer pat-na1-0f3c9a"),
        WEBHOOK_ID,
    )


def test_a_preset_content_type_is_overridden_by_the_hook_in_any_case() -> None:
    request = render(make_hook(preset="cloudevents", headers={"content-type": "application/json"}))
    assert request.header("Content-Type") == "application/json"
    assert [name for name, _ in request.headers].count("content-type") == 1


def test_webhook_id_is_always_the_delivery_id() -> None:
    request = render(make_hook(headers={"webhook-id": "mine"}))
    assert [value for name, value in request.headers if name == "webhook-id"] == [DELIVERY_ID]


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param("a\r\nX-Injected: 1", id="CRLF"),
        pytest.param("a\nb", id="LF"),
        pytest.param("a\rb", id="CR"),
        pytest.param("a\x00b", id="NUL"),
    ],
)
def test_a_header_value_with_cr_lf_or_nul_is_a_render_error_naming_it(subject: str) -> None:
    hook = make_hook(headers={"X-Who": "{{ event.subject }}"})
    with pytest.raises(RenderError) as caught:
        render(hook, with_data({}, subject=subject))
    assert caught.value.name == "headers.X-Who"
    assert "CR, LF or NUL" in caught.value.message


# -- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(None, CLOUDEVENT, id="default: the whole event"),
        pytest.param(
            {
                "email": "{{ event.subject }}",
                "score": "{{ event.data.score }}",
                "fixed": 3,
                "nested": {"done": "{{ event.data.quizCompleted }}"},
            },
            {"email": "amit@gmetri.com", "score": 100, "fixed": 3, "nested": {"done": True}},
            id="a table keeps native types",
        ),
        pytest.param(
            {"list": ["{{ event.id }}", "x {{ event.data.score }}"]},
            {"list": ["evt_1", "x 100"]},
            id="an array of templates",
        ),
        pytest.param("{{ event.data }}", DATA, id="one expression"),
        pytest.param(
            '{"who": {{ event.subject }}, "score": {{ event.data.score }}, '
            '"rule": {{ event.data.rule }}}',
            {"who": "amit@gmetri.com", "score": 100, "rule": {"name": "Quiz done"}},
            id="JSON text, each {{ }} a JSON value",
        ),
    ],
)
def test_json_bodies(body: Any, expected: Any) -> None:
    request = render(make_hook(body=body))
    assert request.header("content-type") == "application/json"
    assert json.loads(request.body) == expected
    if not isinstance(body, str) or body.startswith("{{"):
        assert request.body == compact(expected)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"who": "{{ event.subject }}", "data": "{{ event.data }}"}, id="table"),
        pytest.param({"who": "prefix {{ event.subject }} suffix"}, id="string in a table"),
        pytest.param('{"who": {{ event.subject }}, "data": {{ event.data }}}', id="JSON text"),
        pytest.param(
            "[{{ event.subject }}, {{ event.data.s }}, {{ event.data.list }}]", id="JSON text array"
        ),
    ],
)
def test_a_json_body_stays_valid_json_for_hostile_strings(body: Any) -> None:
    event = with_data({"s": HOSTILE, "list": [HOSTILE, {"k": HOSTILE}]}, subject=HOSTILE)
    request = render(make_hook(body=body), event)
    parsed = json.loads(request.body.decode("utf-8"))
    flat = json.dumps(parsed, ensure_ascii=False)
    assert json.dumps(HOSTILE, ensure_ascii=False)[1:-1] in flat  # the string came through whole


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"who": "{{ event.subject }}"}', id="quotes around a JSON value"),
        pytest.param('{"who": {{ event.subject }}', id="unclosed"),
        pytest.param('{"who": {{ event.subject }} {{ event.subject }}}', id="two values"),
    ],
)
def test_a_json_text_body_that_renders_invalid_json_is_a_render_error(body: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(make_hook(body=body))
    assert caught.value.name == "body"
    assert "valid JSON" in caught.value.message


def test_a_form_body() -> None:
    body = {
        "email": "{{ event.subject }}",
        "done": "{{ event.data.quizCompleted }}",
        "off": "{{ false }}",
        "gone": "{{ none }}",
        "rule": "{{ event.data.rule }}",
        "text": "{{ event.data.s }}",
    }
    request = render(
        make_hook(body=body, body_format="form"),
        with_data({"quizCompleted": True, "rule": {"name": "Q"}, "s": "a&b=c d"}),
    )
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    assert request.body == (
        b"email=amit%40gmetri.com&done=true&off=false"
        b"&rule=%7B%22name%22%3A%22Q%22%7D&text=a%26b%3Dc+d"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "{{ event.subject }} scored {{ event.data.score }}",
            b"amit@gmetri.com scored 100",
            id="a text template",
        ),
        pytest.param("{{ event.data }}", compact(DATA), id="a table as JSON text"),
        pytest.param("{{ event.data.score }}", b"100", id="a number"),
        pytest.param("Grüße {{ event.subject }}", "Grüße amit@gmetri.com".encode(), id="UTF-8"),
    ],
)
def test_a_text_body(body: str, expected: bytes) -> None:
    request = render(make_hook(body=body, body_format="text"))
    assert request.header("content-type") == "text/plain; charset=utf-8"
    assert request.body == expected


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
def test_other_methods_carry_the_body(method: str) -> None:
    request = render(make_hook(method=method, body={"a": "{{ event.id }}"}))
    assert (request.method, request.body) == (method, b'{"a":"evt_1"}')


def test_a_delete_has_no_body_by_default() -> None:
    request = render(make_hook(method="DELETE"))
    assert (request.method, request.body, request.header("content-type")) == ("DELETE", b"", None)


# -- when -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "data", "expected"),
    [
        pytest.param(None, {}, True, id="no condition"),
        pytest.param("{{ event.data.done }}", {"done": True}, True, id="true"),
        pytest.param("{{ event.data.done }}", {"done": False}, False, id="false"),
        pytest.param("{{ event.data.score > 50 }}", {"score": 75}, True, id="comparison"),
        pytest.param("{{ event.data.tags }}", {"tags": []}, False, id="empty list is false"),
    ],
)
def test_when_decides_whether_to_deliver(when: str | None, data: Any, expected: bool) -> None:
    assert should_deliver(make_hook(when=when), with_data(data), {}) is expected


def test_a_when_that_fails_is_a_render_error() -> None:
    with pytest.raises(RenderError) as caught:
        should_deliver(make_hook(when="{{ event.data.nope.deeper }}"), with_data({}), {})
    assert caught.value.name == "when"


# -- the record kept in the history -----------------------------------------------------------

B64_SECRET = "c2Vj/cmV0+dG9r="  # base64-looking: `/`, `+` and `=` change when URL-encoded
B64_PIECES = ("c2Vj", "cmV0", "dG9r")
PLAIN_SECRET = "pat-na1-0f3c9a"
QUOTED_SECRET = 'pa"ss\\wd-Zq7'


@pytest.mark.parametrize(
    ("keys", "secret", "pieces"),
    [
        pytest.param(
            {"url": "https://x.example/{{ secrets.s }}/in"},
            PLAIN_SECRET,
            (PLAIN_SECRET,),
            id="in the URL path",
        ),
        pytest.param(
            {"url": "https://x.example/in?key={{ secrets.s }}"},
            PLAIN_SECRET,
            (PLAIN_SECRET,),
            id="in the URL's own query",
        ),
        pytest.param(
            {"headers": {"Authorization": "Bearer {{ secrets.s }}"}},
            B64_SECRET,
            B64_PIECES,
            id="in a header",
        ),
        pytest.param(
            {"body": {"token": "{{ secrets.s }}"}}, B64_SECRET, B64_PIECES, id="in a JSON body"
        ),
        pytest.param(
            {"body": "key={{ secrets.s }}", "body_format": "text"},
            B64_SECRET,
            B64_PIECES,
            id="in a text body",
        ),
        pytest.param(
            {"params": {"key": "{{ secrets.s }}"}},
            B64_SECRET,
            B64_PIECES,
            id="in a query param (URL-encoded)",
        ),
        pytest.param(
            {"body": {"token": "{{ secrets.s }}"}, "body_format": "form"},
            B64_SECRET,
            B64_PIECES,
            id="in a form body (URL-encoded)",
        ),
        pytest.param(
            {"body": {"token": "{{ secrets.s }}"}},
            QUOTED_SECRET,
            ("wd-Zq7",),
            id="in a JSON body, escaped",
        ),
    ],
)
def test_the_record_never_holds_a_secret(
    keys: dict[str, Any], secret: str, pieces: tuple[str, ...]
) -> None:
    secrets = {"s": secret, "other": "unused-secret"}
    request = render(make_hook(**keys), secrets=secrets)
    record = request.record(secrets)
    text = json.dumps(record, ensure_ascii=False)
    assert "[redacted]" in text
    for piece in pieces:
        assert piece not in text, f"{piece!r} (part of the secret) is in the record: {text}"


def test_the_record_keeps_everything_else() -> None:
    request = render(make_hook(headers={"Authorization": "Bearer {{ secrets.hubspot_token }}"}))
    assert request.record(SECRETS) == {
        "method": "POST",
        "url": URL,
        "headers": [
            list(UA),
            list(JSON_CT),
            ["authorization", "Bearer [redacted]"],
            list(WEBHOOK_ID),
        ],
        "body": request.body.decode(),
        "body_encoding": "utf-8",
    }


def test_a_body_that_is_not_utf8_is_recorded_as_base64() -> None:
    request = OutboundRequest("POST", URL, (), b"\xff\xfe\x00")
    record = request.record({})
    assert (record["body"], record["body_encoding"]) == (
        base64.b64encode(b"\xff\xfe\x00").decode(),
        "base64",
    )


# -- cURL -------------------------------------------------------------------------------------


class CurlRequest:
    """What curl sends for an argument list, per its manual: `--data-binary @name` reads the file
    `name`, `--data-binary` otherwise sends the text as is."""

    def __init__(self, argv: list[str]) -> None:
        assert argv[0] == "curl"
        self.method = "GET"
        self.headers: list[tuple[str, str]] = []
        self.body: bytes | None = None
        self.reads_file: str | None = None
        self.urls: list[str] = []
        args = iter(argv[1:])
        for arg in args:
            if arg in ("--silent", "--show-error", "-s", "-S"):
                continue
            if arg in ("--request", "-X"):
                self.method = next(args)
            elif arg in ("--header", "-H"):
                name, _, value = next(args).partition(":")
                self.headers.append((name, value.strip()))
            elif arg in ("--data-binary", "--data-raw"):
                value = next(args)
                if arg == "--data-binary" and value.startswith("@"):
                    self.reads_file = value[1:]
                else:
                    self.body = value.encode("utf-8")
            elif arg.startswith("-"):
                raise AssertionError(f"unexpected curl option {arg}")
            else:
                self.urls.append(arg)


@pytest.mark.parametrize(
    ("keys", "event"),
    [
        pytest.param({"preset": "zapier"}, EVENT, id="zapier"),
        pytest.param({"preset": "standard-webhooks", "signing_secret": WHSEC}, EVENT, id="signed"),
        pytest.param(
            {"method": "GET", "params": {"q": "{{ event.subject }}"}}, EVENT, id="GET with params"
        ),
        pytest.param(
            {"body": {"s": "{{ event.subject }}"}},
            with_data({}, subject=HOSTILE.replace("\x00", "")),
            id="hostile strings in a JSON body",
        ),
        pytest.param(
            {"body": "it's {{ event.subject }} $HOME `id` $(id)", "body_format": "text"},
            EVENT,
            id="shell metacharacters",
        ),
        pytest.param(
            {"body": {"a": "{{ event.subject }}"}, "body_format": "form"}, EVENT, id="form"
        ),
        pytest.param(
            {"body": "@channel {{ event.subject }} is done", "body_format": "text"},
            EVENT,
            id="a text body starting with @",
        ),
    ],
)
def test_as_curl_sends_the_same_request(keys: dict[str, Any], event: Event) -> None:
    request = render(make_hook(**keys), event)
    curl = CurlRequest(shlex.split(request.as_curl()))
    assert curl.method == request.method
    assert curl.urls == [request.url]
    assert curl.headers == list(request.headers)
    assert curl.reads_file is None, f"curl would send the file {curl.reads_file!r} instead"
    assert curl.body == (request.body or None)


# -- signing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "reference"),
    [
        pytest.param(WHSEC, WHSEC, id="a whsec_ secret"),
        pytest.param(
            "whsec_" + base64.b64encode(bytes(range(31))).decode().rstrip("="),
            "whsec_" + base64.b64encode(bytes(range(31))).decode().rstrip("="),
            id="a whsec_ secret without base64 padding, as the reference takes it",
        ),
        pytest.param(
            "a plain shared secret",
            b"a plain shared secret",
            id="any other secret as its UTF-8 bytes",
        ),
    ],
)
def test_sign_matches_the_standard_webhooks_reference(secret: str, reference: str | bytes) -> None:
    body = compact({"type": "t", "data": {"s": HOSTILE}})
    ours = sign(secret, "msg_1", "1714564800", body)
    theirs = standardwebhooks.Webhook(reference).sign(
        "msg_1", datetime.fromtimestamp(1714564800, UTC), body.decode()
    )
    assert ours == theirs


def test_a_whsec_secret_that_is_not_base64_is_a_render_error() -> None:
    with pytest.raises(RenderError) as caught:
        sign("whsec_not*base64!", "m", "1", b"")
    assert caught.value.name == "signing_secret"


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param({"preset": "standard-webhooks", "signing_secret": WHSEC}, id="preset"),
        pytest.param(
            {"preset": "zapier", "signing_secret": "{{ secrets.signing }}"},
            id="a secret from [secrets] on another preset",
        ),
        pytest.param(
            {
                "body": "{{ event.subject }}: {{ event.data.s }}",
                "body_format": "text",
                "signing_secret": WHSEC,
            },
            id="a text body with hostile strings",
        ),
    ],
)
def test_a_signed_request_verifies_with_the_reference_package(keys: dict[str, Any]) -> None:
    request = render(make_hook(**keys), with_data({"s": HOSTILE}), now=time.time())
    verifier = standardwebhooks.Webhook(WHSEC)
    verifier.verify(request.body, dict(request.headers), json_parse=False)
    assert request.header("webhook-id") == DELIVERY_ID
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(request.body + b" ", dict(request.headers), json_parse=False)


def test_an_unsigned_request_has_no_signature_headers() -> None:
    request = render(make_hook())
    assert request.header("webhook-signature") is None
    assert request.header("webhook-timestamp") is None


# -- template attacks -------------------------------------------------------------------------

ATTACKS = [
    pytest.param("{{ ''.__class__.__mro__ }}", id="mro"),
    pytest.param("{{ cycler.__init__.__globals__ }}", id="globals"),
    pytest.param("{{ 'a'|attr('format') }}", id="attr format"),
    pytest.param("{{ 'A' * 10**9 }}", id="a gigabyte string"),
    pytest.param("{{ 9 ** (9 ** 9) }}", id="a huge power"),
    pytest.param(
        "{% for a in range(10**6) %}{% for b in range(10**6) %}x{% endfor %}{% endfor %}",
        id="nested range loops",
    ),
    pytest.param(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        id="nested loops under the range limit",
    ),
]


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize(
    ("where", "name"),
    [
        pytest.param("url", "url", id="url"),
        pytest.param("header", "headers.X-A", id="header"),
        pytest.param("body", "body.a", id="body"),
        pytest.param("param", "params.p", id="param"),
    ],
)
def test_a_template_attack_is_a_render_error_within_a_second(
    attack: str, where: str, name: str
) -> None:
    keys: dict[str, Any] = {
        "url": {"url": URL + attack},
        "header": {"headers": {"X-A": attack}},
        "body": {"body": {"a": attack}},
        "param": {"params": {"p": attack}},
    }[where]
    hook = make_hook(**keys)
    started = time.perf_counter()
    with pytest.raises(RenderError) as caught:
        render(hook)
    assert time.perf_counter() - started < 1.0
    assert caught.value.name == name


class _Fixed:
    """A body that renders to `value` whatever the context."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def render(self, context: Any) -> Any:
        return self.value


@pytest.mark.parametrize(
    "value",
    [
        {"rows": [{"a": 1, "b": 1.5, "c": "x"}] * 3},
        [1e-7, 1e16, -0.0, 5e-324, 2**63 - 1, -(2**63)],
        {"big": 2**64, "bigger": -(2**70)},
        {"n": None, "s": "null"},
        {"t": True, "f": False},
        {1: "int key", None: "none key"},
        {"s": HOSTILE},
        {"lone": "\ud800"},
        ("a", "tuple"),
        {"nan": float("nan")},
        [float("inf")],
        {"deep": [[[[[]]]]]},
        "text",
        12,
        None,
        {"when": datetime(2024, 5, 1, tzinfo=UTC)},
        {"bytes": b"x"},
        {"set": {1}},
    ],
)
def test_a_json_body_is_written_as_json_would_write_it(value: Any) -> None:
    """orjson writes a JSON body only where json writes the same values; json's errors stay."""
    hook = make_hook()
    try:
        expected = json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        with pytest.raises(RenderError, match="cannot be written as JSON"):
            outbound._encode(hook, _Fixed(value), {})  # type: ignore[arg-type]
        assert str(exc)
        return
    written = outbound._encode(hook, _Fixed(value), {})  # type: ignore[arg-type]
    assert json.loads(written) == expected
    assert repr(json.loads(written)) == repr(expected)  # type for type: no int became a float
