"""The console's pure helpers for issue 19: what Save finds (with the nearest name), plain
words for errors and durations, the search snippet, the requests a hook might have wanted."""

from __future__ import annotations

from typing import Any

from relayhook.core.events import Event
from relayhook.core.hooks import validate_hook
from relayhook.web.console.hookcheck import (
    event_fields,
    pattern_findings,
    render_findings,
)
from relayhook.web.console.hookform import Row, blank_values
from relayhook.web.console.hooks import wanted_skips
from relayhook.web.console.pages import format_duration, plain_error
from relayhook.web.console.search import snippet

OPT_IN = Event(
    id="e1",
    source="gamify/gf",
    type="gamify.optin.submitted",
    subject=None,
    time="2026-01-01T00:00:00Z",
    relay="gf",
    data={"event": "Opt-in Submit", "campaign": {"id": "cmp-42"}, "data": {"score": 87}},
)


def hook(**spec: Any) -> Any:
    return validate_hook(
        {"name": "h", "events": ["gamify.optin.submitted"], "url": "https://example.com/", **spec}
    )


def test_a_pattern_matching_no_known_type_names_the_nearest() -> None:
    (finding,) = pattern_findings(
        hook(events=["gamify.opt-in.submit"]),
        {"gamify.optin.submitted", "gmetri.rule.triggered"},
        ["gamify.opt-in.submit"],
    )
    assert finding.level == "error" and finding.field == "patterns"
    assert finding.message == (
        "No event type matches 'gamify.opt-in.submit', so this hook "
        "would never send. Did you mean 'gamify.optin.submitted'?"
    )
    assert pattern_findings(hook(events=["gamify.*"]), {"gamify.optin.submitted"}, []) == []


def test_a_field_typo_in_the_url_names_the_nearest_field() -> None:
    values = {**blank_values(), "url": "https://example.com/{event.data.campain.id}"}
    (finding,) = render_findings(hook(url=values["url"]), OPT_IN, values, {}, 0.0)
    assert (finding.level, finding.field) == ("error", "url")
    assert finding.message == (
        "No field 'data.campain.id' in this event. Did you mean 'data.campaign.id'?"
    )
    assert "campain" in finding.details  # the raw text, for Details


def test_a_field_typo_in_a_body_row_is_found_at_its_row() -> None:
    values = {
        **blank_values(),
        "body_mode": "rows",
        "body_rows": [Row("email", "event", "subject"), Row("score", "event", "data.scor")],
    }
    spec_hook = hook(
        body={"email": "{{ event.subject | default(none) }}", "score": "{{ event.data.scor }}"}
    )
    (finding,) = render_findings(spec_hook, OPT_IN, values, {}, 0.0)
    assert finding.field == "body_value_1"
    # Gamify's own trap: its score is data.data.score
    assert finding.message == (
        "No field 'data.scor' in this event. Did you mean 'data.data.score'?"
    )


def test_a_false_condition_is_a_warning_not_a_block() -> None:
    values = {**blank_values(), "when": "{{ event.data.data.score > 100 }}"}
    (finding,) = render_findings(hook(when=values["when"]), OPT_IN, values, {}, 0.0)
    assert finding.level == "warning" and "filtered out" in finding.message


def test_the_field_picker_lists_nested_fields_with_their_values() -> None:
    fields = event_fields(OPT_IN)
    assert ("type", "gamify.optin.submitted", 0) in fields
    assert ("data.data.score", "87", 2) in fields
    assert "subject" not in [path for path, _, _ in fields]  # none: not offered


def test_errors_and_durations_in_plain_words() -> None:
    assert plain_error("url: 'dict object' has no attribute 'campain'").startswith(
        "The event has no field 'campain'"
    )
    assert plain_error("HTTP 500 (after 3 attempts)") == "The service answered 500."
    assert "Settings" in plain_error("destination refused: 10.0.0.5 is a private address")
    assert format_duration(3.2) == "3 ms"
    assert format_duration(46.288, seconds=True) == "46 s"
    assert format_duration(7300, seconds=True) == "2 h 2 min"


def test_a_search_snippet_marks_the_match_and_escapes_the_rest() -> None:
    found = snippet("event=Opt-in&campaign=<b>Spring</b>", "spring")
    assert found is not None and "<mark>Spring</mark>" in found and "&lt;b&gt;" in found
    assert snippet("nothing here", "spring") is None


def test_a_hook_does_not_list_other_services_traffic_as_skipped() -> None:
    skips = [
        {"outcome": "relay_not_subscribed", "types": []},
        {"outcome": "type_not_subscribed", "types": ["gmetri.rule.triggered"]},
        {"outcome": "type_not_subscribed", "types": ["gamify.level.completed"]},
        {"outcome": "condition_false", "types": []},
    ]
    assert [s["outcome"] for s in wanted_skips(hook(), skips)] == [
        "type_not_subscribed",
        "condition_false",
    ]
    assert wanted_skips(hook(), skips)[0]["types"] == ["gamify.level.completed"]
