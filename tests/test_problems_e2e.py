"""Problems end to end: `relayhook serve` on 127.0.0.1 with a real SQLite file and a real
receiver. A receiver answering 401 opens one problem for the hook (three deliveries, one
signature), and `[alerts] webhook`, a local receiver, gets one alert about it; it is
acknowledged through the API; once the receiver takes them, Replay affected sends them again
and the success resolves it. A 410 deactivates a hook and alerts that it did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from receiver import Receiver, Reply
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

ADMIN_TOKEN = "admin-token-problems-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WAIT = 15.0
RELAY = RelayConfig("crm-in", "generic", "tok-problems-00000000000")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[RelayhookProcess]:
    hooks = [
        {
            "name": name,
            "events": [f"{name}.*"],
            "relays": [RELAY.name],
            "url": f"{receiver.url}/{name}/",
            "retry": {"schedule": [0], "jitter": 0},
        }
        for name in ("hubspot", "gone")
    ]
    text = (
        render_config(relays=[RELAY], admin_token=ADMIN_TOKEN)
        + render_tables(
            delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1},
            alerts={"webhook": f"{receiver.url}/alerts/", "interval": 0.1},
        )
        + render_hooks(hooks)
    )
    with RelayhookProcess(tmp_path_factory.mktemp("problems"), text) as process:
        yield process


@pytest.fixture
def client(server: RelayhookProcess) -> Iterator[httpx.Client]:
    with http_client(base_url=server.url) as c:
        yield c


def problems(client: httpx.Client, status: str = "open,acknowledged") -> list[dict[str, Any]]:
    response = client.get("/api/problems", params={"status": status}, headers=AUTH)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_401_opens_one_problem_acknowledged_then_resolved_by_replay_affected(
    client: httpx.Client, receiver: Receiver
) -> None:
    receiver.script("/hubspot/", Reply(401, body=b"token expired"))
    for n in range(3):
        answer = client.post(f"/in/{RELAY.token}?type=hubspot.contact", json={"n": n})
        assert answer.status_code == 200, answer.text
    receiver.wait_for(3, WAIT, path="/hubspot/")

    def grouped() -> dict[str, Any] | None:
        found = problems(client)
        return found[0] if found and found[0]["deliveries"] == 3 else None

    problem = wait_until(grouped, timeout=WAIT, interval=0.05, what="one problem of 3")
    assert len(problems(client)) == 1
    assert (problem["hook"], problem["signature"], problem["status"]) == (
        "hubspot",
        "status 401",
        "open",
    )
    assert problem["summary"].startswith("hook 'hubspot': status 401 since ")
    assert problem["summary"].endswith(", 3 deliveries")
    (alert,) = receiver.wait_for(1, WAIT, path="/alerts/")
    sent = json.loads(alert.body)
    assert sent["type"] == "relayhook.problem.opened"
    assert sent["text"].startswith("hook 'hubspot': status 401 since ")
    assert sent["problem"]["id"] == problem["id"]

    acked = client.post(f"/api/problems/{problem['id']}/acknowledge", headers=AUTH)
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged"
    again = client.post(f"/api/problems/{problem['id']}/acknowledge", headers=AUTH)
    assert again.status_code == 409
    assert client.post("/api/problems/prb_none/replay", headers=AUTH).status_code == 404
    assert client.get("/api/problems?status=closed", headers=AUTH).status_code == 400

    receiver.script("/hubspot/", Reply(200))
    replayed = client.post(f"/api/problems/{problem['id']}/replay", headers=AUTH)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replayed"] == 3
    receiver.wait_for(6, WAIT, path="/hubspot/")

    def resolved() -> dict[str, Any] | None:
        done = [p for p in problems(client, "resolved") if p["id"] == problem["id"]]
        return done[0] if done else None

    closed = wait_until(resolved, timeout=WAIT, interval=0.05, what="the problem resolved")
    assert closed["resolved_at"] is not None and closed["acknowledged_at"] is not None
    assert problems(client) == []
    assert receiver.count("/hubspot/") == 6  # each affected delivery sent once more, no more
    assert receiver.count("/alerts/") == 1  # one alert per problem, not per delivery


def test_a_410_deactivates_the_hook_and_alerts_that_it_did(
    client: httpx.Client, receiver: Receiver
) -> None:
    receiver.script("/gone/", Reply(410))
    answer = client.post(f"/in/{RELAY.token}?type=gone.away", json={"n": 1})
    assert answer.status_code == 200, answer.text

    def deactivated() -> dict[str, Any] | None:
        for recorded in receiver.requests("/alerts/"):
            body: dict[str, Any] = json.loads(recorded.body)
            if body["type"] == "relayhook.hook.deactivated":
                return body
        return None

    alert = wait_until(deactivated, timeout=WAIT, interval=0.05, what="the 410 alert")
    assert alert["text"].startswith("hook 'gone' was deactivated")
    assert alert["problem"]["signature"] == "status 410"
    hook = client.get("/api/hooks/gone", headers=AUTH).json()
    assert hook["active"] is False
