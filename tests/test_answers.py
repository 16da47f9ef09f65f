"""Answers as data (unit): rules that answer the provider or refuse the request, the checks made
when such a rule loads, unfilled placeholders; and the first-run banner `serve` prints."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relayhook.cli import main
from relayhook.cli.serve import banner
from relayhook.core.connectors import SHIPPED_DIR, load_connector, load_connectors
from relayhook.core.hooks import build_hooks
from relayhook.core.mapping import InboundRequest, Mapped, MappingError, map_inbound
from relayhook.errors import ConnectorError
from relayhook.live import LiveConfig
from relayhook.relays import Relay
from relayhook.settings import load_settings

CHATTER = Path(__file__).parent / "fixtures" / "handshake" / "chatter.toml"
AT = datetime(2024, 5, 1, tzinfo=UTC)


def mapped(path: Path, method: str, query: str = "", body: bytes = b"") -> Mapped:
    return map_inbound(
        load_connector(path),
        InboundRequest(method, query, (), body),
        relay="r",
        received_at=AT,
        new_id=lambda: "e",
    )


def test_a_get_challenge_is_echoed_as_text() -> None:
    result = mapped(CHATTER, "GET", "mode=subscribe&challenge=abc%20d")
    assert result.events == []
    assert result.answer is not None
    assert (result.answer.status, result.answer.headers, result.answer.body) == (
        200,
        (("content-type", "text/plain; charset=utf-8"),),
        b"abc d",
    )


def test_a_post_challenge_is_answered_as_json() -> None:
    result = mapped(CHATTER, "POST", body=b'{"type": "url_verification", "challenge": "z"}')
    assert result.answer is not None and json.loads(result.answer.body) == {"challenge": "z"}
    assert result.answer.headers == (("content-type", "application/json"),)


def test_other_requests_make_events_and_no_answer() -> None:
    body = (CHATTER.parent / "examples" / "chatter-message.json").read_bytes()
    result = mapped(CHATTER, "POST", body=body)
    assert result.answer is None and [e.type for e in result.events] == ["chatter.message.posted"]


def write(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "hs.toml"
    path.write_text(
        'id = "hs"\ntitle = "H"\naccept = { methods = ["GET", "POST"], formats = '
        '["query", "json-object"] }\nauth = { scheme = "none" }\n\n' + rules
    )
    return path


def test_an_answer_with_events_status_and_headers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[events]]\nwhen = "{{ query.ping is defined }}"\n'
        'type = "hs.pinged"\nsource = "hs"\n'
        'answer = { status = 202, content_type = "text/csv", body = "ok,{{ '
        'query.ping }}", headers = { "X-Echo" = "{{ query.ping }}" } }\n'
        '[[events]]\ntype = "hs.other"\nsource = "hs"\n',
    )
    result = mapped(path, "GET", "ping=7")
    assert [e.type for e in result.events] == ["hs.pinged"]  # the other rule is not used
    assert result.answer is not None
    assert (result.answer.status, result.answer.headers, result.answer.body) == (
        202,
        (("content-type", "text/csv"), ("x-echo", "7")),
        b"ok,7",
    )


def test_an_answer_header_that_http_cannot_carry_is_a_mapping_error(tmp_path: Path) -> None:
    """HTTP header values are Latin-1: a rendered value outside it refuses the request (kept as
    rejected, answered 400) rather than failing the answer after the request was stored."""
    path = write(tmp_path, '[[events]]\nanswer = { headers = { "X-Echo" = "{{ query.ping }}" } }\n')
    assert mapped(path, "GET", "ping=caf%C3%A9").answer.headers[-1] == ("x-echo", "café")  # type: ignore[union-attr]
    with pytest.raises(MappingError, match="Latin-1"):
        mapped(path, "GET", "ping=%E2%82%AC")


def test_reject_refuses_with_its_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[events]]\nwhen = "{{ query.bad is defined }}"\n'
        'reject = "bad is {{ query.bad }}"\n'
        '[[events]]\ntype = "hs.ok"\nsource = "hs"\n',
    )
    with pytest.raises(MappingError) as caught:
        mapped(path, "GET", "bad=1")
    assert str(caught.value) == "hs: bad is 1"
    assert [e.type for e in mapped(path, "GET", "good=1").events] == ["hs.ok"]


@pytest.mark.parametrize(
    ("rules", "key", "message"),
    [
        (
            '[[events]]\nfor = ["x in body.xs"]\nanswer = { body = "{{ x }}" }\n',
            "events[0].answer.body",
            "is decided once per request: it may not read a loop variable",
        ),
        (
            "[[events]]\nanswer = { status = 503 }\n",
            "events[0].answer.status",
            "Input should be less than or equal to 499",
        ),
        (
            '[[events]]\nreject = "no"\ntype = "a.b"\nsource = "s"\n',
            "events[0].reject",
            "a rule that rejects makes no event and gives no answer: drop type, source and answer",
        ),
        (
            '[[events]]\nsource = "s"\n',
            "events[0].type",
            "required key is missing (or answer, or reject)",
        ),
        (
            '[[events]]\nanswer = { headers = { "Content-Type" = "x" } }\n',
            "events[0].answer.headers.Content-Type",
            "'Content-Type' cannot be set here (content_type sets the Content-Type)",
        ),
    ],
)
def test_what_a_deciding_rule_may_not_do(
    tmp_path: Path, rules: str, key: str, message: str
) -> None:
    with pytest.raises(ConnectorError) as caught:
        load_connector(write(tmp_path, rules))
    assert (caught.value.key, caught.value.message) == (key, message)


def test_generic_refuses_an_unfilled_query_placeholder() -> None:
    out = io.StringIO()
    assert (
        main(["map", "generic", "/dev/null", "--method", "GET", "--query", "a={ x }"], out=out) == 1
    )
    generic = load_connectors([SHIPPED_DIR])["generic"]
    with pytest.raises(MappingError) as caught:
        map_inbound(
            generic,
            InboundRequest("GET", "order=%7BorderId%7D&n=1", (), b""),
            relay="r",
            received_at=AT,
            new_id=lambda: "e",
        )
    assert str(caught.value).startswith(
        "generic: query parameter `order` arrived as `{orderId}`: the provider did not fill in"
    )
    body = b'{"template": "{name}"}'  # a body is data: braces in it are not placeholders
    assert map_inbound(
        generic, InboundRequest("POST", "", (), body), relay="r", received_at=AT, new_id=lambda: "e"
    ).events


def test_map_prints_the_answer_first() -> None:
    out = io.StringIO()
    assert main(["map", str(CHATTER), "--example", "GET handshake"], out=out) == 0
    assert json.loads(out.getvalue()) == {
        "answer": {
            "status": 200,
            "headers": {"content-type": "text/plain; charset=utf-8"},
            "body": "b8e1f0c2",
        }
    }


# --- the banner ----------------------------------------------------------------------------


def test_the_first_run_banner_leads_somewhere(tmp_path: Path) -> None:
    config = tmp_path / "relayhook.toml"
    config.write_text(
        '[admin]\ntoken = "t0k3n-0123456789"\n\n[[relays]]\nname = "gm"\n'
        'connector = "gmetri"\ntoken = "gm-token-0123456789"\nsecret = "s3cret"\n'
    )
    settings = load_settings(config)
    connectors = load_connectors([SHIPPED_DIR])
    relay = Relay("gm", connectors["gmetri"], "gm-token-0123456789", "s3cret")
    text = banner(settings, LiveConfig({}, {relay.token: relay}), wrote_config=True)
    assert text.splitlines()[:4] == [
        "Relayhook on http://127.0.0.1:8080, store sqlite:///relayhook.db",
        "Relay URLs start with http://127.0.0.1:8080: providers on the internet cannot reach "
        f"that. Set [server] public_url in {config} (or RELAYHOOK_SERVER__PUBLIC_URL) to the "
        "https address they reach this server at.",
        f"Admin API token (shown once; it is [admin] token in {config}): t0k3n-0123456789",
        "No hooks yet: nothing is sent anywhere. Make one in the console: "
        "http://127.0.0.1:8080/hooks/new (Hooks > New hook; it takes effect at once).",
    ]
    assert f"Or add one to {config} and restart:" in text
    assert 'events = ["gmetri.variables.changed"]' in text
    assert 'relayhook send-test "My first hook"' in text
    assert "Webhook Basic Auth String:  s3cret" in text

    public = load_settings(config, server={"public_url": "https://relay.example.com/"})
    hooks = build_hooks(
        [{"name": "h", "events": ["*"], "url": "https://example.com/", "active": False}]
    )
    later = banner(public, LiveConfig(hooks, {relay.token: relay}), wrote_config=False)
    assert "Relay URLs start with https://relay.example.com ([server] public_url)." in later
    assert f"Admin API token: [admin] token in {config}" in later
    assert "s3cret" not in later and "t0k3n" not in later
    assert (
        "  inactive: 'h': inactive in the config; it stays inactive across restarts until "
        "you set active = true in the config."
    ) in later
