"""The JSON API in process (tests/web.py): what needs no real socket, moved here from the
end-to-end files (each feature keeps its end-to-end test there; tests/README.md says which).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from servers import RelayConfig
from web import ADMIN_TOKEN, MakeWebApp

from relayhook.cli import main as cli_main

# --- from test_live_config_e2e.py ------------------------------------------------------------


def test_invalid_input_names_the_field_in_the_words_of_check(web_app: MakeWebApp) -> None:
    app = web_app(delivery={"allow_private_destinations": True})
    answer = app.api(
        "POST",
        "/api/hooks",
        status=422,
        json={
            "name": "bad",
            "events": ["x.*"],
            "url": "http://127.0.0.1:9/",
            "timeout": -1,
            "retry": {"schedule": "soon"},
            "colour": "red",
        },
    )
    fields = {e["field"]: e["message"] for e in answer["errors"]}
    assert fields == {
        "timeout": "Input should be greater than 0",
        "retry.schedule": "Input should be a valid list",
        "colour": "unknown key (a typo?)",
    }
    answer = app.api(
        "POST",
        "/api/hooks",
        status=422,
        json={"name": "h", "events": ["x"], "url": "http://127.0.0.1:9/{{ event.nope("},
    )
    assert answer["errors"][0]["field"] == "url"
    answer = app.api("POST", "/api/relays", status=422, json={"name": "a b", "connector": "zzz"})
    assert {e["field"] for e in answer["errors"]} == {"name", "connector"}
    app.api("POST", "/api/relays", status=201, json={"name": "a", "connector": "generic"})
    app.api("POST", "/api/relays", status=409, json={"name": "a", "connector": "generic"})
    app.api("DELETE", "/api/relays/nope", status=404)
    app.api("PUT", "/api/hooks/nope", status=404, json={"events": ["x"], "url": "http://x"})
    app.api("POST", "/api/hooks", status=422, content=b"[1")
    connectors = {c["id"]: c for c in app.api("GET", "/api/connectors")["items"]}
    assert "gmetri.rule.triggered" in connectors["gmetri"]["event_types"]
    assert connectors["gmetri"]["setup"] and connectors["gmetri"]["example"]


# --- from test_e2e.py -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/requests", "/api/events", "/api/relays"])
def test_the_api_needs_the_bearer_token(web_app: MakeWebApp, path: str) -> None:
    app = web_app()
    missing = app.get(path)
    assert missing.status_code == 401, missing.text
    assert missing.headers["WWW-Authenticate"].lower().startswith("bearer")
    wrong = app.get(path, headers={"Authorization": "Bearer not-the-admin-token"})
    assert wrong.status_code == 401, wrong.text
    basic_auth = app.get(path, headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
    assert basic_auth.status_code == 401, basic_auth.text


@pytest.mark.parametrize("path", ["/api/requests", "/api/events"])
@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1001"])
def test_a_bad_limit_is_400(web_app: MakeWebApp, path: str, limit: str) -> None:
    answer = web_app().api("GET", path, params={"limit": limit}, status=400)
    assert "limit" in answer["error"]


ACME_CONNECTOR = """\
id = "acme"
title = "Acme orders"
accept = {{ methods = ["POST"], formats = ["json-object"] }}
auth = {{ scheme = "none" }}

[[events]]
name = "one event per ordered item"
for = ["item in {items}"]
type = "acme.item.ordered"
source = "acme/{{{{ relay }}}}"
subject = "{{{{ item.sku }}}}"
data = "{{{{ item }}}}"
"""
ACME = RelayConfig("acme-shop", "acme", "tok-acme-shop-000000001")
ORDER = b'{"order": 7, "items": [{"sku": "a-1", "qty": 2}, {"sku": "b-2", "qty": 1}]}'


def test_remap_maps_a_rejected_request_again_once_its_connector_is_fixed(
    web_app: MakeWebApp, tmp_path: Path
) -> None:
    connector = tmp_path / "extra" / "acme.toml"  # beside the config web_app writes
    connector.parent.mkdir()
    connector.write_text(ACME_CONNECTOR.format(items="body.order_items"), encoding="utf-8")  # typo
    first = web_app(relays=[ACME], connectors={"dirs": ["extra"]})
    response = first.request("POST", f"/in/{ACME.token}", content=ORDER)
    assert response.status_code == 400, response.text
    assert "order_items" in response.json()["error"]
    request_id = response.json()["request_id"]
    first.close()

    # `body.items` is the payload's key, not dict.items(): payload keys come first.
    connector.write_text(ACME_CONNECTOR.format(items="body.items"), encoding="utf-8")
    out = io.StringIO()
    assert cli_main(["--config", str(first.config_path), "remap"], out) == 0, out.getvalue()
    assert request_id in out.getvalue()
    again = io.StringIO()
    assert cli_main(["remap", "--config", str(first.config_path)], again) == 0
    assert request_id not in again.getvalue()  # accepted now: nothing left to remap

    second = web_app(relays=[ACME], connectors={"dirs": ["extra"]})
    stored = second.api("GET", f"/api/requests?relay={ACME.name}")["items"]
    (record,) = [r for r in stored if r["id"] == request_id]
    events = second.api("GET", f"/api/events?request={request_id}")["items"]
    assert record["status"] == "accepted" and record["error"] is None
    assert sorted(e["subject"] for e in events) == ["a-1", "b-2"]
    assert {e["type"] for e in events} == {"acme.item.ordered"}
    assert sorted(record["event_ids"]) == sorted(e["id"] for e in events)


# --- from test_samples_e2e.py -------------------------------------------------------------------

QUIZ = RelayConfig("quiz-in", "generic", "tok-samples-000000000000")


def test_a_condition_is_dry_run_over_the_last_real_events(web_app: MakeWebApp) -> None:
    app = web_app(
        relays=[QUIZ],
        hooks=[
            {
                "name": "zap",
                "events": ["quiz.*"],
                "relays": [QUIZ.name],
                "url": "https://zap.example/zap/",
                "when": "{{ event.data.score > 100 }}",
            }
        ],
    )
    for score in range(10):
        answer = app.request("POST", f"/in/{QUIZ.token}?type=quiz.done", json={"score": score})
        assert answer.status_code == 200, answer.text
    other = app.request("POST", f"/in/{QUIZ.token}?type=other.thing", json={"score": 99})
    assert other.status_code == 200  # a type the hook does not take

    result = app.api(
        "POST",
        "/api/hooks/dry-run",
        json={"hook": "zap", "when": "{{ event.data.score >= 7 }}", "limit": 8},
    )
    assert (result["evaluated"], result["matched"], result["failed"]) == (8, 3, 0)
    assert result["summary"] == "This condition would have matched 3 of the last 8 events."
    # The saved condition (score > 100), and a hook not saved yet, given by its keys.
    assert app.api("POST", "/api/hooks/dry-run", json={"hook": "zap"})["matched"] == 0
    unsaved = {
        "name": "new",
        "events": ["quiz.done"],
        "relays": [QUIZ.name],
        "url": "http://127.0.0.1:9/x",
        "when": "{{ event.data.score % 2 == 0 }}",
    }
    assert (
        app.api("POST", "/api/hooks/dry-run", json={"hook": unsaved, "limit": 10})["matched"] == 5
    )

    broken = app.api(
        "POST", "/api/hooks/dry-run", status=422, json={"hook": "zap", "when": "{{ event.data"}
    )
    assert broken["errors"][0]["field"] == "when"
    app.api("POST", "/api/hooks/dry-run", status=422, json={"hook": "zap", "limit": 5000})
