"""Which values of a hook are secrets, and how they stay out of stored and shown copies."""

from __future__ import annotations

from typing import Any

import pytest

from relayhook.core.outbound import OutboundRequest
from relayhook.core.redaction import (
    REDACTED,
    SecretPlaces,
    redacted_url,
    restore_secrets,
    secret_values,
    still_redacted,
    strip_secrets,
)

HOOK: dict[str, Any] = {
    "name": "crm",
    "events": ["*"],
    "url": "https://user:pw-123456@crm.example/in?token=tok-abcdef&user={{ event.subject }}",
    "headers": {
        "Authorization": "Bearer hdr-secret",
        "Content-Type": "application/json",
        "X-Who": "{{ event.subject }}",
        "X-Ref": "Bearer {{ secrets.crm }}",
    },
    "params": {"key": "k1", "subject": "{{ event.subject }}"},
    "signing_secret": "whsec_c2VjcmV0",
}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://crm.example/in", "https://crm.example/in", id="nothing secret"),
        pytest.param("https://u:p@h.example/x", f"https://u:{REDACTED}@h.example/x", id="password"),
        pytest.param(
            "https://h.example/x?t=abc&u={{ event.subject }}",
            "https://h.example/x?t=%5Bredacted%5D&u={{ event.subject }}".replace(
                "%5Bredacted%5D", REDACTED
            ),
            id="a literal query value, a template kept",
        ),
        pytest.param(
            "https://u@h.example/x", "https://u@h.example/x", id="a user without password"
        ),
        pytest.param(
            "https://h.example/x?user={event.subject}&t=abc",
            f"https://h.example/x?user={{event.subject}}&t={REDACTED}",
            id="a Netmera-style placeholder is event data",
        ),
    ],
)
def test_redacted_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_secret_values_are_the_literals_typed_into_a_hook() -> None:
    assert secret_values(HOOK) == {
        "headers": {"Authorization": "Bearer hdr-secret"},  # not Content-Type, not templates
        "params": {"key": "k1"},
        "url": HOOK["url"],
        "signing_secret": "whsec_c2VjcmV0",
    }


def test_stripped_then_restored_is_the_hook_as_written() -> None:
    stripped = strip_secrets(HOOK)
    text = repr(stripped)
    for secret in ("hdr-secret", "pw-123456", "tok-abcdef", "whsec_c2VjcmV0"):
        assert secret not in text
    assert stripped["headers"]["X-Ref"] == "Bearer {{ secrets.crm }}"
    assert still_redacted(stripped) == [
        "headers.Authorization",
        "params.key",
        "url",
        "signing_secret",
    ]
    assert restore_secrets(stripped, secret_values(HOOK)) == HOOK


def test_a_value_typed_anew_wins_over_the_kept_secret() -> None:
    edited = {**strip_secrets(HOOK), "headers": {"Authorization": "Bearer new"}}
    restored = restore_secrets(edited, secret_values(HOOK))
    assert restored["headers"] == {"Authorization": "Bearer new"}
    assert still_redacted(restore_secrets(edited, {})) == ["params.key", "url", "signing_secret"]


def test_the_history_redacts_each_place_even_a_short_value() -> None:
    places = SecretPlaces.of(HOOK)
    request = OutboundRequest(
        "POST",
        "https://user:pw-123456@crm.example/in?token=tok-abcdef&user=amit&key=k1",
        (("authorization", "Bearer hdr-secret"), ("content-type", "application/json")),
        b'{"echo": "tok-abcdef"}',
    )
    record = request.record({}, places)
    assert record["url"] == (
        f"https://user:{REDACTED}@crm.example/in?token={REDACTED}&user=amit&key={REDACTED}"
    )
    assert record["headers"] == [["authorization", REDACTED], ["content-type", "application/json"]]
    assert "tok-abcdef" not in record["body"]  # a literal secret echoed into the body too
