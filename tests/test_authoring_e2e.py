"""Issue 9 end to end, through real sockets: `relayhook serve` as a subprocess with connector
folders of our own making (signed providers, a handshake), a real receiver for hooks, a real
SQLite file, and the JSON API to read back what was kept.

- signatures as data: a timestamp and the body signed together, several signatures in one
  header, Standard Webhooks signed by the reference library; a replayed (stale) request is 401
  and nothing of it is kept;
- answers as data: a GET and a POST handshake answered as the connector says, and kept;
- Netmera's unfilled `{placeholder}`: a 400 that names it, the request kept;
- a resend links to the events it repeated in /api/requests;
- send-test: the connector example for the hook's first type, printed, kept as a test;
- the first-run banner, with an inactive hook that stays inactive across a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
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
    wait_until,
)
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
ADMIN = "admin-token-issue9-0123456789"
BRIGHTPAY = RelayConfig("brightpay", "brightpay", "tok-brightpay-000000001", "bp-secret-0123456789")
PAYSTREAM = RelayConfig("paystream", "paystream", "tok-paystream-000000001", "ps-new-secret-123")
HOOKCASTER = RelayConfig(
    "hookcaster", "hookcaster", "tok-hookcaster-00000001", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)
CHATTER = RelayConfig("chatter", "chatter", "tok-chatter-00000000001")
NETMERA = RelayConfig("netmera", "netmera", "tok-netmera-00000000001", "nm-secret-0123456789")
ARCADE = RelayConfig("arcade", "synthesisvr", "tok-arcade-000000000001")
GMETRI = RelayConfig("gmetri", "gmetri", "tok-gmetri-000000000001", "gm-secret-0123456789")
RELAYS = [BRIGHTPAY, PAYSTREAM, HOOKCASTER, CHATTER, NETMERA, ARCADE, GMETRI]
BODY = b'{"id": "pay_81", "status": "succeeded", "amount": 4200, "customer": "cus_ada"}'


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[RelayhookProcess]:
    workdir = tmp_path_factory.mktemp("issue9")
    for folder in ("signed", "handshake"):
        shutil.copytree(FIXTURES / folder, workdir / folder)
    hooks = [
        {
            "name": "Quiz results to Zapier",
            "events": ["gmetri.variables.changed"],
            "preset": "zapier",
            "url": receiver.url + "/zap/",
            "relays": ["gmetri"],
            "params": {"user": "{{ event.subject }}"},
        },
        {
            "name": "Paused hook",
            "events": ["synthesisvr.session.*"],
            "active": False,
            "url": receiver.url + "/paused/",
        },
        {
            "name": "Chatter messages",
            "events": ["chatter.*"],
            "relays": ["chatter"],
            "url": receiver.url + "/chatter/",
        },
    ]
    config = render_config(
        relays=RELAYS,
        admin_token=ADMIN,
        connectors={"dirs": ["signed", "handshake"]},
        delivery={"allow_private_destinations": True},
    )
    with RelayhookProcess(workdir, config + "\n" + render_hooks(hooks)) as process:
        yield process


@pytest.fixture
def client(server: RelayhookProcess) -> Iterator[httpx.Client]:
    with http_client(base_url=server.url) as c:
        yield c


def api(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200, response.text
    return response.json()


def kept(client: httpx.Client, relay: RelayConfig) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api(client, "/api/requests", relay=relay.name)["items"]
    return items


def hexmac(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


# --- signatures as data --------------------------------------------------------------------------


def brightpay_post(client: httpx.Client, signed_at: float, body: bytes = BODY) -> httpx.Response:
    ts = str(int(signed_at))
    signature = "v0=" + hexmac(BRIGHTPAY.secret, f"v0:{ts}:".encode() + body)
    return client.post(
        f"/in/{BRIGHTPAY.token}",
        content=body,
        headers={"X-Brightpay-Timestamp": ts, "X-Brightpay-Signature": signature},
    )


def test_a_timestamp_and_the_body_signed_together(client: httpx.Client) -> None:
    fresh = brightpay_post(client, time.time())
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["accepted"] == 1


def test_a_replayed_request_is_refused_with_401_and_not_kept(client: httpx.Client) -> None:
    before = len(kept(client, BRIGHTPAY))
    stale = brightpay_post(client, time.time() - 600, BODY.replace(b"81", b"82"))
    assert stale.status_code == 401, stale.text
    assert stale.json() == {"error": "missing or wrong credentials"}
    assert stale.headers["www-authenticate"] == (
        'Signature realm="relayhook", header="X-Brightpay-Signature", algorithm="sha256"'
    )
    assert len(kept(client, BRIGHTPAY)) == before
    failures = {r["name"]: r["auth_failures"] for r in api(client, "/api/relays")["items"]}
    assert failures[BRIGHTPAY.name] >= 1


def test_any_of_several_signatures_in_one_header(client: httpx.Client) -> None:
    body = (FIXTURES / "signed" / "examples" / "paystream.json").read_bytes()
    ts = str(int(time.time()))
    header = (
        f"t={ts},v1={hexmac('ps-old-secret-456', f'{ts}.'.encode() + body)},"
        f"v1={hexmac(PAYSTREAM.secret, f'{ts}.'.encode() + body)}"
    )
    rotating = client.post(
        f"/in/{PAYSTREAM.token}", content=body, headers={"Paystream-Signature": header}
    )
    assert rotating.status_code == 200, rotating.text
    events = api(client, "/api/events", relay=PAYSTREAM.name)["items"]
    assert [(e["type"], e["subject"]) for e in events] == [("paystream.invoice.paid", "cus_ada")]
    only_old = (
        header.split(",v1=")[0] + ",v1=" + hexmac("ps-old-secret-456", f"{ts}.".encode() + body)
    )
    refused = client.post(
        f"/in/{PAYSTREAM.token}", content=body, headers={"Paystream-Signature": only_old}
    )
    assert refused.status_code == 401


def test_standard_webhooks_signed_by_the_reference_library(client: httpx.Client) -> None:
    body = (FIXTURES / "signed" / "examples" / "hookcaster.json").read_text()
    now = datetime.now(UTC)
    signer = Webhook(HOOKCASTER.secret)
    headers = {
        "webhook-id": "msg_live_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign("msg_live_1", now, body),
        "content-type": "application/json",
    }
    first = client.post(f"/in/{HOOKCASTER.token}", content=body, headers=headers)
    assert first.status_code == 200, first.text
    again = client.post(f"/in/{HOOKCASTER.token}", content=body, headers=headers)
    assert again.json()["duplicates"] == 1  # webhook-id is the connector's key
    old = datetime.fromtimestamp(now.timestamp() - 3600, UTC)
    replayed = {
        **headers,
        "webhook-id": "msg_live_2",
        "webhook-timestamp": str(int(old.timestamp())),
        "webhook-signature": signer.sign("msg_live_2", old, body),
    }
    assert client.post(f"/in/{HOOKCASTER.token}", content=body, headers=replayed).status_code == 401


# --- answers as data ---------------------------------------------------------------------------


def test_a_get_handshake_is_answered_and_kept(client: httpx.Client) -> None:
    answer = client.get(
        f"/in/{CHATTER.token}", params={"mode": "subscribe", "challenge": "b8e1f0c2"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.text == "b8e1f0c2"
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    request = next(r for r in kept(client, CHATTER) if r["method"] == "GET")
    assert (request["status"], request["event_ids"], request["query"]) == (
        "accepted",
        [],
        "mode=subscribe&challenge=b8e1f0c2",
    )


def test_a_relay_url_with_a_trailing_slash_is_the_same_relay(client: httpx.Client) -> None:
    answer = client.get(
        f"/in/{CHATTER.token}/", params={"mode": "subscribe", "challenge": "slash-1"}
    )
    assert (answer.status_code, answer.text) == (200, "slash-1")
    assert client.get(f"/in/{CHATTER.token}//").status_code == 404


def test_a_post_handshake_is_answered_as_json_then_messages_flow(
    client: httpx.Client, receiver: Receiver
) -> None:
    verify = (FIXTURES / "handshake" / "examples" / "chatter-verify.json").read_bytes()
    answer = client.post(f"/in/{CHATTER.token}", content=verify)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRN"}
    assert answer.headers["content-type"] == "application/json"
    message = (FIXTURES / "handshake" / "examples" / "chatter-message.json").read_bytes()
    posted = client.post(f"/in/{CHATTER.token}", content=message)
    assert posted.json()["accepted"] == 1
    delivered = receiver.wait_for(1, timeout=10, path="/chatter/")
    assert json.loads(delivered[0].body)["type"] == "chatter.message.posted"
    kinds = [(r["method"], len(r["event_ids"])) for r in kept(client, CHATTER)]
    assert ("POST", 0) in kinds and ("POST", 1) in kinds  # the handshake made no event


# --- Netmera's unfilled placeholder, a resend's links --------------------------------------------


def test_an_unfilled_netmera_placeholder_is_a_400_that_says_what_to_set(
    client: httpx.Client,
) -> None:
    answer = client.get(
        f"/in/{NETMERA.token}?trigger=push_click&user=%7BuserId%7D",
        headers={"X-Relay-Secret": NETMERA.secret},
    )
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert message.startswith(
        "netmera: parameter `user` arrived as `{userId}`: Netmera did not fill in that placeholder."
    )
    assert "under WebHook Parameters add a row with Key `userId`" in message
    rejected = api(client, "/api/requests", relay=NETMERA.name, status="rejected")["items"]
    assert [r["id"] for r in rejected] == [answer.json()["request_id"]]
    assert rejected[0]["error"] == message


def test_a_resend_links_to_the_events_it_repeated(client: httpx.Client) -> None:
    body = (
        FIXTURES.parent.parent / "connectors" / "examples" / "synthesisvr-delete.json"
    ).read_bytes()
    first = client.post(f"/in/{ARCADE.token}", content=body).json()
    again = client.post(f"/in/{ARCADE.token}", content=body).json()
    assert (first["accepted"], again["duplicates"]) == (1, 1)
    requests = {r["id"]: r for r in kept(client, ARCADE)}
    original = requests[first["request_id"]]
    resend = requests[again["request_id"]]
    assert original["duplicate_ids"] == [] and len(original["event_ids"]) == 1
    assert resend["event_ids"] == resend["duplicate_ids"] == original["event_ids"]


# --- send-test, render ---------------------------------------------------------------------------


def cli(server: RelayhookProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", "--config", str(server.config_path), *args],
        cwd=server.workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_send_test_sends_the_example_of_the_hooks_type_and_keeps_it_as_a_test(
    server: RelayhookProcess, client: httpx.Client, receiver: Receiver
) -> None:
    done = cli(server, "send-test", "Quiz results to Zapier")
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert out.startswith(
        "event: gmetri.variables.changed (relay gmetri, subject "
        "amit@gmetri.com)\n\n> POST " + receiver.url + "/zap/?user=amit"
    )
    assert "\n< 200\n" in out
    delivery_id = out.rsplit(" ", 1)[1].strip()
    arrived = receiver.requests("/zap/")[-1]
    assert arrived.header("webhook-id") == delivery_id
    assert len(delivery_id) == 36 and delivery_id[14] == "7"  # a UUIDv7, as real deliveries
    history = api(client, "/api/deliveries", hook="Quiz results to Zapier")["items"]
    assert [(d["id"], d["status"], d["test"]) for d in history] == [
        (delivery_id, "succeeded", True)
    ]
    detail = api(client, f"/api/deliveries/{delivery_id}")
    assert detail["attempts"][0]["response_status"] == 200
    assert detail["event"]["data"] == {"score": 100, "quizCompleted": True}
    counts = api(client, "/api/hooks")["items"]
    quiz = next(h for h in counts if h["name"] == "Quiz results to Zapier")
    assert quiz["deliveries"]["succeeded"] == 0  # a test is history, not work
    rendered = cli(server, "render", "Quiz results to Zapier")
    assert rendered.returncode == 0, rendered.stderr
    assert "--header 'webhook-id: " in rendered.stdout and "test-" not in rendered.stdout


# --- the first-run banner ----------------------------------------------------------------------


def test_the_banner_says_where_things_are_and_keeps_inactive_hooks_inactive(
    server: RelayhookProcess, client: httpx.Client
) -> None:
    log = server.log()
    assert (
        f"Relay URLs start with {server.url}: providers on the internet cannot reach "
        "that. Set [server] public_url in"
    ) in log
    assert f"Admin API token: [admin] token in {server.config_path}" in log
    assert "Hooks: 3, 2 active." in log
    assert (
        "inactive: 'Paused hook': inactive in the config; it stays inactive across "
        "restarts until you set active = true in the config."
    ) in log
    assert "WebHook Parameters: one row per {placeholder} of the URI" in log
    deactivate = client.post(
        "/api/hooks/Chatter messages/deactivate", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert deactivate.status_code == 200, deactivate.text
    server.stop()
    server.start()
    wait_until(lambda: "Uvicorn running" in server.log(), timeout=10, what="the new log")
    assert (
        "inactive: 'Chatter messages': deactivated through the API; it stays inactive "
        "across restarts until you POST /api/hooks/Chatter messages/activate."
    ) in server.log()
