"""Secrets masked by where a template reads them: whatever a template does to a `[secrets]`
value (reverse, lower, a slice, its length), the history and the preview show `[redacted]`
there; and a template cannot write out a function's or a class's Python name."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from relayhook.core.events import Event
from relayhook.core.hooks import build_hooks
from relayhook.core.outbound import record_request, render_request
from relayhook.core.templating import RenderError, compile_template
from relayhook.logs import Redactor

SECRET = "SuperSecretToken42"
SECRETS = {"crm": SECRET}
EVENT = Event(
    "e-1", "src", "demo.ping", "subject-1", "2024-05-01T12:00:00.000Z", {"name": "Amit"}, "door"
)


def recorded(**spec: Any) -> dict[str, Any]:
    hook = build_hooks([{"name": "h", "events": ["*"], **spec}])["h"]
    request = render_request(hook, EVENT, delivery_id="d-1", secrets=SECRETS, now=1.0)
    return record_request(hook, EVENT, request, delivery_id="d-1", secrets=SECRETS, now=1.0)


def leaks(text: str) -> bool:
    lowered = text.lower()
    return any(
        form.lower() in lowered
        for form in (SECRET, SECRET[::-1], SECRET[:-1], SECRET[1:], SECRET[3:12])
    )


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("secrets.crm | reverse", id="reverse"),
        pytest.param("secrets.crm | lower", id="lower"),
        pytest.param("secrets.crm | upper", id="upper"),
        pytest.param("secrets.crm[:-1]", id="[:-1]"),
        pytest.param("secrets.crm[1:]", id="[1:]"),
        pytest.param("secrets.crm | replace('S', 's')", id="replace"),
        pytest.param("secrets.crm | list | join('-')", id="joined"),
        pytest.param("secrets.crm | urlencode", id="urlencode"),
    ],
)
def test_a_transformed_secret_is_masked_in_url_header_and_body(expression: str) -> None:
    record = recorded(
        url="https://93.184.215.14/x?k={{ " + expression + " }}&who={{ event.subject }}",
        headers={"X-Key": "Bearer {{ " + expression + " }}", "X-Who": "{{ event.subject }}"},
        body='{"key": {{ ' + expression + ' }}, "name": {{ event.data.name }}}',
    )
    shown = str(record)
    assert not leaks(shown), shown
    assert record["url"].endswith("&who=subject-1") and "k=[redacted]" in record["url"]
    assert ["x-key", "Bearer [redacted]"] in record["headers"]
    assert ["x-who", "subject-1"] in record["headers"]
    assert record["body"] == '{"key": "[redacted]", "name": "Amit"}'


def test_a_hook_that_reads_no_secret_is_recorded_as_before() -> None:
    record = recorded(
        url="https://93.184.215.14/x",
        headers={"X-Who": "{{ event.subject }}"},
        body="{{ event.data }}",
    )
    assert ["x-who", "subject-1"] in record["headers"] and record["body"] == '{"name":"Amit"}'


def test_a_secret_read_whole_is_still_redacted_by_value_and_a_length_is_masked() -> None:
    record = recorded(
        url="https://93.184.215.14/x",
        headers={"X-A": "{{ secrets.crm }}", "X-N": "{{ secrets.crm | length }}"},
    )
    assert ["x-a", "[redacted]"] in record["headers"]
    assert ["x-n", "18"] not in record["headers"]


def test_the_second_render_costs_only_hooks_that_read_secrets() -> None:
    plain = build_hooks(
        [
            {
                "name": "p",
                "events": ["*"],
                "url": "https://93.184.215.14/x",
                "headers": {"X-Who": "{{ event.subject }}"},
            }
        ]
    )["p"]
    assert not plain.reads_secrets
    request = render_request(plain, EVENT, delivery_id="d", secrets=SECRETS, now=1.0)
    started = time.perf_counter()
    for _ in range(200):
        record_request(plain, EVENT, request, delivery_id="d", secrets=SECRETS, now=1.0)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "source",
    [
        "{{ '%s' % cycler }}",
        "{{ '%s' % joiner }}",
        "{{ '%s' % range }}",
        "{{ 'x' ~ dict }}",
        "{{ '{}'.format(range) }}",
        "{{ range | string }}",
        "{{ [range] | join(',') }}",
        "{{ '%(a)s' % {'a': 'x'.upper} }}",
    ],
)
def test_a_template_cannot_write_out_a_python_name(source: str) -> None:
    with pytest.raises(RenderError) as caught:
        compile_template(source, "body").render({})
    assert "class" not in str(caught.value) or "not on a class" in str(caught.value)


def test_data_still_formats() -> None:
    assert compile_template("{{ '%s-%d' % ('a', 2) }}", "b").render({}) == "a-2"
    assert compile_template("{{ [1, 2] | join(',') }}", "b").render({}) == "1,2"


# --- log lines: base64 forms --------------------------------------------------------------

PASSWORD = "Sm7p-pa55word!"


@pytest.mark.parametrize("prefix", [b"\0a@b.c\0", b"\0ab@b.c\0", b"\0abc@b.c\0", b"u:", b""])
@pytest.mark.parametrize("urlsafe", [False, True], ids=["standard", "url-safe"])
def test_a_secret_base64_encoded_inside_a_longer_text_is_redacted_in_log_lines(
    prefix: bytes, urlsafe: bool
) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    token = encode(prefix + PASSWORD.encode() + b"\0tail").decode()
    line = Redactor({PASSWORD: "[redacted]"})(f"535 5.7.8 AUTH PLAIN {token} refused")
    assert "[redacted]" in line
    left = line.split()[4].replace("[redacted]", "")
    assert PASSWORD.encode()[2:-2] not in base64.b64decode(left + "===")  # nothing usable
    assert line.startswith("535 5.7.8 AUTH PLAIN ") and line.endswith(" refused")


def test_ordinary_base64_is_left_alone() -> None:
    token = base64.b64encode(b"\0alerts@example.com\0another password").decode()
    assert Redactor({PASSWORD: "[redacted]"})(token) == token
