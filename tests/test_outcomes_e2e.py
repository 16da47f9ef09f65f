"""Why a hook did or did not fire, end to end: `relayhook serve` on 127.0.0.1 with a real SQLite
file and a real receiver. Every outcome kind is produced by a real request and read back through
`GET /api/requests/{id}/outcomes`, `relayhook why` and the hook's skipped list; Run again after
a fix delivers what the fix allows, once.

Destination refused: the hook's rendered URL aims at 127.0.0.2, outside `allow_cidrs`
(127.0.0.1/32), so the policy refuses it before any connection.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from receiver import Receiver
from servers import (
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-outcomes-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WAIT = 15.0
MAIN = RelayConfig("why-main", "generic", "tok-why-main-0000000000")
OTHER = RelayConfig("why-other", "generic", "tok-why-other-000000000")


def hooks(rx: str) -> list[dict[str, Any]]:
    def hook(name: str, **more: Any) -> dict[str, Any]:
        return {
            "name": name,
            "events": ["*"],
            "relays": [MAIN.name],
            "url": f"{rx}/{name}/",
            "retry": {"schedule": [0], "jitter": 0},
            **more,
        }

    return [
        hook("ok"),
        hook("typed", events=["order.*"]),
        hook("elsewhere", relays=[OTHER.name]),
        hook("scored", when="{{ event.data.score > 3 }}"),
        hook("paused", active=False),
        hook("broken", body={"x": "{{ event.data.missing.deeper }}"}),
        hook("refused", url="http://{{ event.data.host | default('127.0.0.2') }}:9/refused/"),
    ]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[RelayhookProcess]:
    text = (
        render_config(relays=[MAIN, OTHER], admin_token=ADMIN_TOKEN)
        + render_tables(delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1})
        + render_hooks(hooks(receiver.url))
    )
    # Hooks that fail to render are part of what is shown: accepted despite diagnostics.
    with RelayhookProcess(
        tmp_path_factory.mktemp("outcomes"), text, extra_args=["--accept-findings"]
    ) as process:
        yield process


@pytest.fixture
def client(server: RelayhookProcess) -> Iterator[httpx.Client]:
    with http_client(base_url=server.url) as c:
        yield c


def post(
    client: httpx.Client,
    relay: RelayConfig,
    data: Any,
    type: str = "test.happened",
    expect: int = 200,
) -> str:
    response = client.post(f"/in/{relay.token}?type={type}", json=data)
    assert response.status_code == expect, response.text
    return str(response.json()["request_id"])


def outcomes(client: httpx.Client, request_id: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"/api/requests/{request_id}/outcomes", headers=AUTH)
    assert response.status_code == 200, response.text
    return {item["hook"]: item for item in response.json()["items"]}


def settled(client: httpx.Client, request_id: str, hook: str, kind: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        item = outcomes(client, request_id)[hook]
        return item if item["outcome"] == kind else None

    found: dict[str, Any] = wait_until(
        check, timeout=WAIT, interval=0.05, what=f"{hook} on {request_id} to be {kind}"
    )
    return found


def test_every_hook_says_why_it_did_or_did_not_fire(
    client: httpx.Client, server: RelayhookProcess
) -> None:
    request_id = post(client, MAIN, {"score": 2, "name": "amit"})

    assert settled(client, request_id, "ok", "delivered")["deliveries"] == {"succeeded": 1}
    typed = outcomes(client, request_id)["typed"]
    assert typed["outcome"] == "type_not_subscribed"
    assert "test.happened" in typed["summary"] and "order.*" in typed["summary"]
    elsewhere = outcomes(client, request_id)["elsewhere"]
    assert elsewhere["outcome"] == "relay_not_subscribed"
    assert "why-main" in elsewhere["summary"]
    scored = outcomes(client, request_id)["scored"]
    assert scored["outcome"] == "condition_false"
    assert scored["summary"] == "condition false: event.data.score = 2"
    assert scored["routed"]["detail"]["condition_false"]["values"] == {"event.data.score": 2}
    assert scored["deliveries"] == {}  # a false condition makes no delivery
    paused = outcomes(client, request_id)["paused"]
    assert paused["outcome"] == "paused" and paused["deliveries"] == {"paused": 1}
    broken = settled(client, request_id, "broken", "render_error")
    assert "missing" in broken["summary"]
    refused = settled(client, request_id, "refused", "destination_refused")
    assert "destination refused" in refused["summary"]


def test_a_request_that_maps_no_event_says_so_with_the_connectors_error(
    client: httpx.Client,
) -> None:
    response = client.post(
        f"/in/{MAIN.token}", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    request_id = response.json()["request_id"]
    found = outcomes(client, request_id)
    assert found["ok"]["outcome"] == "no_event"
    assert found["ok"]["summary"].startswith("no event mapped: ")
    assert "JSON" in found["ok"]["summary"] or "json" in found["ok"]["summary"]
    assert found["elsewhere"]["outcome"] == "relay_not_subscribed"


def test_the_hook_lists_the_requests_it_skipped_and_why(client: httpx.Client) -> None:
    request_id = post(client, MAIN, {"score": 1})
    response = client.get("/api/hooks/scored/skipped", headers=AUTH)
    assert response.status_code == 200, response.text
    newest = response.json()["items"][0]
    assert newest["request_id"] == request_id
    assert (newest["outcome"], newest["summary"]) == (
        "condition_false",
        "condition false: event.data.score = 1",
    )


def test_relayhook_why_prints_every_hook_and_its_outcome(
    client: httpx.Client, server: RelayhookProcess
) -> None:
    request_id = post(client, MAIN, {"score": 0})
    settled(client, request_id, "ok", "delivered")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "relayhook.cli",
            "why",
            "--config",
            str(server.config_path),
            request_id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert "condition false: event.data.score = 0" in lines["scored"]
    assert "delivered" in lines["ok"]
    assert "relay not subscribed" in lines["elsewhere"]
    as_json = subprocess.run(
        [
            sys.executable,
            "-m",
            "relayhook.cli",
            "why",
            "--config",
            str(server.config_path),
            "--json",
            request_id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    items = {i["hook"]: i for i in json.loads(as_json.stdout)["items"]}
    assert items["scored"]["outcome"] == "condition_false"


def test_run_again_after_a_fix_delivers_what_the_fix_allows_once(
    client: httpx.Client, receiver: Receiver
) -> None:
    hook = {
        "name": "fixable",
        "events": ["*"],
        "relays": [MAIN.name],
        "url": f"{receiver.url}/fixable/",
        "when": "{{ event.data.level == 'gold' }}",
        "retry": {"schedule": [0], "jitter": 0},
    }
    # Its condition fails on the connector's examples (no `level`): saved despite diagnostics.
    created = client.post("/api/hooks?accept_findings=true", json=hook, headers=AUTH)
    assert created.status_code == 201, created.text
    request_id = post(client, MAIN, {"level": "Gold", "score": 9})
    before = outcomes(client, request_id)["fixable"]
    assert before["summary"] == "condition false: event.data.level = 'Gold'"

    fixed = {**hook, "when": "{{ event.data.level | lower == 'gold' }}"}
    assert (
        client.put("/api/hooks/fixable?accept_findings=true", json=fixed, headers=AUTH).status_code
        == 200
    )
    again = client.post(f"/api/requests/{request_id}/run-again", headers=AUTH)
    assert again.status_code == 200, again.text
    assert again.json()["result"].startswith("ran again: 1 new deliveries")
    (sent,) = receiver.wait_for(1, WAIT, path="/fixable/")
    assert json.loads(sent.body)["data"]["level"] == "Gold"
    assert settled(client, request_id, "fixable", "delivered")["deliveries"] == {"succeeded": 1}

    twice = client.post(f"/api/requests/{request_id}/run-again", headers=AUTH)
    assert twice.json()["result"].startswith("ran again: 0 new deliveries, 0 ")
    assert receiver.count("/fixable/") == 1
    # The hooks that were right the first time got no second delivery either.
    assert outcomes(client, request_id)["ok"]["deliveries"] == {"succeeded": 1}


def test_run_again_requeues_a_delivery_the_dispatcher_skipped(
    client: httpx.Client, receiver: Receiver
) -> None:
    """A hook whose condition is made false after routing: the dispatcher skips its delivery
    and says with which value; fixed, Run again makes that same delivery due again."""
    hook = {
        "name": "late",
        "events": ["*"],
        "relays": [MAIN.name],
        "active": False,
        "url": f"{receiver.url}/late/",
        "retry": {"schedule": [0], "jitter": 0},
    }
    assert client.post("/api/hooks", json=hook, headers=AUTH).status_code == 201
    request_id = post(client, MAIN, {"score": 5})
    assert outcomes(client, request_id)["late"]["outcome"] == "paused"
    strict = {**hook, "active": True, "when": "{{ event.data.score > 10 }}"}
    assert (
        client.put("/api/hooks/late?accept_findings=true", json=strict, headers=AUTH).status_code
        == 200
    )
    client.post("/api/hooks/late/activate", headers=AUTH)
    skipped = settled(client, request_id, "late", "condition_false")
    assert "event.data.score = 5" in skipped["summary"]
    (delivery_before,) = client.get(
        "/api/deliveries", params={"hook": "late"}, headers=AUTH
    ).json()["items"]

    loose = {**strict, "when": "{{ event.data.score > 1 }}"}
    assert (
        client.put("/api/hooks/late?accept_findings=true", json=loose, headers=AUTH).status_code
        == 200
    )
    again = client.post(f"/api/requests/{request_id}/run-again", headers=AUTH).json()
    assert again["result"] == "ran again: 0 new deliveries, 1 skipped deliveries due again"
    receiver.wait_for(1, WAIT, path="/late/")
    settled(client, request_id, "late", "delivered")
    (delivery_after,) = client.get("/api/deliveries", params={"hook": "late"}, headers=AUTH).json()[
        "items"
    ]
    assert delivery_after["id"] == delivery_before["id"]
