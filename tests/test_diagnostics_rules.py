"""The rules of relayhook.core.diagnostics as pure functions, and the time fixes beside them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from relayhook.core.connectors import SHIPPED_DIR, load_connectors
from relayhook.core.diagnostics import Finding, Scope, Traffic, hook_findings
from relayhook.core.events import Event
from relayhook.core.hooks import build_hooks
from relayhook.core.mapping import InboundRequest, map_inbound
from relayhook.core.templating import RenderError, compile_template


def locate(key: tuple[str | int, ...]) -> str:
    return "hook 'h': " + ".".join(str(k) for k in key)


def one_hook(**spec: object) -> object:
    raw = {"name": "h", "events": ["crm.*"], "url": "http://127.0.0.1:9/", **spec}
    return next(iter(build_hooks([raw]).values()))


def stored(n: int, data: dict[str, object]) -> Event:
    return Event(f"e{n}", "crm", "crm.deal.won", None, "2024-12-01T10:00:00.000Z", data, "r")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1733050000.000100", "2024-12-01T10:46:40.000Z", id="text with a fraction: s"),
        pytest.param("1733050000000", "2024-12-01T10:46:40.000Z", id="whole text: ms"),
        pytest.param("123456", "1970-01-01T00:02:03.456Z", id="whole text, small: ms"),
    ],
)
def test_a_text_with_a_fraction_is_epoch_seconds(text: str, expected: str) -> None:
    connectors = load_connectors([SHIPPED_DIR])
    body = (
        b'{"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": '
        b'{"type": "message", "user": "U1", "event_ts": "' + text.encode() + b'"}}'
    )
    mapped = map_inbound(
        connectors["slack"],
        InboundRequest("POST", "", (), body),
        relay="r",
        received_at=datetime(2024, 1, 1, tzinfo=UTC),
        new_id=lambda: "x",
    )
    assert mapped.events[0].time == expected


def test_epoch_s_on_milliseconds_says_which_unit() -> None:
    with pytest.raises(RenderError) as caught:
        compile_template("{{ 1733050000000 | epoch_s }}", "time").render({})
    assert caught.value.message == (
        "1733050000000 is not a time in epoch seconds (epoch "
        "milliseconds? drop `| epoch_s`: numbers are epoch "
        "milliseconds)"
    )


def test_a_pattern_seen_only_in_the_store_is_fine_and_counts_are_shown() -> None:
    connectors = load_connectors([SHIPPED_DIR])
    scope = Scope({"crm": connectors["stripe"]})
    hook = one_hook(events=["stripe.charge.refunded"])
    traffic = Traffic({"stripe.charge.refunded": 2})
    assert hook_findings(hook, locate, scope, traffic) == []  # type: ignore[arg-type]
    typo = one_hook(events=["stripe.charge.refundd"])
    found = hook_findings(typo, locate, scope, traffic)  # type: ignore[arg-type]
    assert found == [
        Finding(
            "warning",
            "hook 'h': events.0",
            "event pattern 'stripe.charge.refundd' matches none of the event types the examples "
            "produce or the store has seen (2 events): a typo? the hook fires only if such a type "
            "ever comes; nearest: stripe.charge.refunded (seen 2 times)",
            "stripe.charge.refunded",
        )
    ]
    assert str(found[0]).startswith("hook 'h': events.0: warning: event pattern")


def test_a_hook_failing_on_some_stored_events_only_is_a_warning() -> None:
    crm = load_connectors([Path(__file__).parent / "fixtures" / "keyed"])["crm"]
    scope = Scope({"crm": crm})
    hook = one_hook(events=["crm.deal.won"], body={"a": "{{ event.data.amount }}"})
    some = Traffic({"crm.deal.won": 2}, [stored(1, {"amount": 3}), stored(2, {})])
    every = Traffic({"crm.deal.won": 1}, [stored(2, {})])
    assert [f.level for f in hook_findings(hook, locate, scope, some)] == [  # type: ignore[arg-type]
        "warning"
    ]
    assert [f.level for f in hook_findings(hook, locate, scope, every)] == [  # type: ignore[arg-type]
        "error"
    ]


def test_finding_json() -> None:
    finding = Finding("error", "f.toml:a:1", "wrong", "right")
    assert finding.to_json() == {
        "level": "error",
        "location": "f.toml:a:1",
        "message": "wrong",
        "nearest": "right",
    }
    assert str(finding) == "f.toml:a:1: wrong"


def test_a_finding_never_shows_a_secret_value() -> None:
    connectors = load_connectors([SHIPPED_DIR])
    hook = one_hook(events=["stripe.invoice.paid"], url="{{ secrets.crm }}")
    found = hook_findings(
        hook,
        locate,
        Scope({"stripe": connectors["stripe"]}),  # type: ignore[arg-type]
        secrets={"crm": "canary-secret-value-0123"},
    )
    assert [f.message for f in found] == [
        "url fails on the example event 'stripe.invoice.paid' and 1 more of the 2 it matches: "
        "'[redacted]' is not an http:// or https:// URL; the delivery would die"
    ]


def test_the_fallback_of_a_templated_type_is_a_type_the_connector_emits() -> None:
    """The generic connector's type is `{{ query.type | default('generic.webhook.received') }}`:
    a hook on the documented default type may fire, so it is no "matches nothing" error."""
    from relayhook.core.connectors import emitted_types

    generic = load_connectors([SHIPPED_DIR])["generic"]
    literal, prefixes = emitted_types(generic)
    assert "generic.webhook.received" in literal
    assert "" in prefixes  # any other ?type= stays possible
