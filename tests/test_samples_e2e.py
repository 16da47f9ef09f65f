"""Saved samples end to end: `relayhook serve` on 127.0.0.1 with a real SQLite file and a real
receiver. A stored request is pinned as a named sample through the API, outlives retention
(`relayhook prune` deletes its original), and `relayhook send-test --sample` sends its event.
A condition dry-run over the last N real events is tested in process (test_api_inprocess.py).
"""

from __future__ import annotations

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
    clean_env,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-samples-0123456789ab"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RELAY = RelayConfig("quiz-in", "generic", "tok-samples-000000000000")
BRIEF = RelayConfig("brief-in", "generic", "tok-samples-brief-0000000")  # kept about 1 s
WAIT = 15.0


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
            "name": "zap",
            "events": ["quiz.*"],
            "relays": [RELAY.name, BRIEF.name],
            "url": f"{receiver.url}/zap/",
            "when": "{{ event.data.score > 100 }}",
        }
    ]
    text = (
        render_config(relays=[RELAY, BRIEF], admin_token=ADMIN_TOKEN)
        + render_tables(
            delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1},
            retention={"days": 30, "relays": {BRIEF.name: 1e-5}, "interval": 0},
        )
        + render_hooks(hooks)
    )
    with RelayhookProcess(tmp_path_factory.mktemp("samples"), text) as process:
        yield process


@pytest.fixture
def client(server: RelayhookProcess) -> Iterator[httpx.Client]:
    with http_client(base_url=server.url) as c:
        yield c


def cli(server: RelayhookProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", "--config", str(server.config_path), *args],
        cwd=server.workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def post(client: httpx.Client, type: str, data: dict[str, Any], relay: RelayConfig = RELAY) -> str:
    answer = client.post(f"/in/{relay.token}?type={type}", json=data)
    assert answer.status_code == 200, answer.text
    records = client.get("/api/requests", params={"limit": 1}, headers=AUTH).json()["items"]
    request_id: str = records[0]["id"]
    return request_id


def test_a_pinned_sample_outlives_retention_and_is_sent_by_send_test(
    server: RelayhookProcess, client: httpx.Client, receiver: Receiver
) -> None:
    request_id = post(client, "quiz.done", {"score": 42, "user": "ana"}, BRIEF)
    pinned = client.post(
        "/api/samples", json={"name": "Ana quiz", "request_id": request_id}, headers=AUTH
    )
    assert pinned.status_code == 201, pinned.text
    assert pinned.json()["events"][0]["data"] == {"score": 42, "user": "ana"}
    taken = client.post(
        "/api/samples", json={"name": "Ana quiz", "request_id": request_id}, headers=AUTH
    )
    assert taken.status_code == 409
    bad = client.post("/api/samples", json={"name": "", "request_id": request_id}, headers=AUTH)
    assert bad.status_code == 422
    missing = client.post("/api/samples", json={"name": "x", "request_id": "nope"}, headers=AUTH)
    assert missing.status_code == 404

    # Retention lets the relay's requests go after about a second; the sample, a copy, stays.
    def pruned() -> bool:
        done = cli(server, "prune")
        assert done.returncode == 0, done.stderr + done.stdout
        gone = client.get(f"/api/requests/{request_id}/outcomes", headers=AUTH)
        return gone.status_code == 404

    wait_until(pruned, timeout=WAIT, interval=0.5, what="the pinned request pruned")
    kept = client.get("/api/samples/Ana quiz", headers=AUTH)
    assert kept.status_code == 200 and kept.json()["request"]["id"] == request_id

    # The hook's condition (score > 100) is false for it; a test send goes regardless.
    before = len(receiver.requests("/zap/"))
    sent = cli(server, "send-test", "zap", "--sample", "Ana quiz")
    assert sent.returncode == 0, sent.stderr + sent.stdout
    arrived = wait_until(
        lambda: receiver.requests("/zap/")[before:], timeout=WAIT, what="the sample's test delivery"
    )
    assert b'"user":"ana"' in arrived[0].body.replace(b" ", b"")
    unknown = cli(server, "send-test", "zap", "--sample", "nothing")
    assert unknown.returncode != 0 and "no sample named 'nothing'" in unknown.stderr

    listed = client.get("/api/samples", headers=AUTH).json()["items"]
    assert [s["name"] for s in listed] == ["Ana quiz"]
    assert client.delete("/api/samples/Ana quiz", headers=AUTH).status_code == 204
    assert client.get("/api/samples/Ana quiz", headers=AUTH).status_code == 404
