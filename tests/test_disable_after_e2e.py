"""`[alerts] disable_after` and e-mail alerts end to end: `relayhook serve` on 127.0.0.1 with a
real SQLite file, a real receiver (the hook's and the alerts webhook's) and a real SMTP server
(tests/smtp.py, with a login).

A receiver answering 401 opens a problem, alerted by webhook and e-mail; with `disable_after =
3` and one try per delivery, the second dead delivery in a row warns (`will_deactivate`), the
third switches the hook off (`deactivated`, the API shows why, new deliveries wait, paused);
switching it on starts the count again, and so does a success. The SMTP password is in no log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.message import EmailMessage
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
from smtp import SmtpServer

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-disable-after-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SMTP_PASSWORD = "smtp-Pa55-e2e-never-logged"
WAIT = 15.0
RELAY = RelayConfig("flaky-in", "generic", "tok-disable-after-00000")
REASON = "deactivated after 3 dead deliveries in a row"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(login=("relayhook", SMTP_PASSWORD)) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, smtp: SmtpServer
) -> Iterator[RelayhookProcess]:
    hook = {
        "name": "flaky",
        "events": ["flaky.*"],
        "relays": [RELAY.name],
        "url": f"{receiver.url}/flaky/",
        "concurrency": 1,
        "retry": {"schedule": [0], "jitter": 0},
    }  # one try: a failure is dead at once
    email = {
        "to": "ops@example.com",
        "from": "Relayhook <relayhook@example.com>",
        "host": "127.0.0.1",
        "port": smtp.port,
        "username": "relayhook",
        "password": SMTP_PASSWORD,
        "tls": "none",
        "timeout": 5.0,
    }
    text = (
        render_config(relays=[RELAY], admin_token=ADMIN_TOKEN)
        + render_tables(
            server={"public_url": "https://relay.example.com"},
            delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1},
            alerts={
                "webhook": f"{receiver.url}/alerts/",
                "interval": 0.1,
                "disable_after": 3,
                "email": email,
            },
        )
        + render_hooks([hook])
    )
    with RelayhookProcess(tmp_path_factory.mktemp("disable-after"), text) as process:
        yield process


@pytest.fixture
def client(server: RelayhookProcess) -> Iterator[httpx.Client]:
    with http_client(base_url=server.url) as c:
        yield c


def alerts(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    found = [json.loads(r.body) for r in receiver.requests("/alerts/")]
    return [body for body in found if body["type"] == f"relayhook.{kind}"]


def wait_alerts(receiver: Receiver, kind: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wait_until(
        lambda: len(alerts(receiver, kind)) >= count and alerts(receiver, kind),
        timeout=WAIT,
        interval=0.05,
        what=f"{count} {kind} alert(s)",
    )
    return found


def mails(smtp: SmtpServer, subject: str) -> list[EmailMessage]:
    # A subject too long for one line with "Subject: " is folded before it, and the parser
    # keeps that fold's space.
    return [m for m in smtp.received() if m["Subject"].strip() == subject]


def wait_mail(smtp: SmtpServer, subject: str, count: int = 1) -> EmailMessage:
    found: list[EmailMessage] = wait_until(
        lambda: len(mails(smtp, subject)) >= count and mails(smtp, subject),
        timeout=WAIT,
        interval=0.05,
        what=f"{count} e-mail(s) {subject!r}",
    )
    return found[-1]


def hook_state(client: httpx.Client) -> tuple[bool, str | None]:
    body = client.get("/api/hooks/flaky", headers=AUTH).json()
    return body["active"], body["inactive_reason"]


def deliveries(client: httpx.Client, status: str) -> list[dict[str, Any]]:
    answer = client.get("/api/deliveries", params={"hook": "flaky", "status": status}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def post(client: httpx.Client, n: int) -> None:
    answer = client.post(f"/in/{RELAY.token}?type=flaky.event", json={"n": n})
    assert answer.status_code == 200, answer.text


def post_until(client: httpx.Client, n: int, status: str, count: int) -> None:
    """Post event `n`, then wait until the hook has `count` deliveries in `status`."""
    post(client, n)
    wait_until(
        lambda: len(deliveries(client, status)) >= count,
        timeout=WAIT,
        interval=0.05,
        what=f"{count} {status} deliveries",
    )


def test_a_401_mails_a_problem_then_the_hook_is_warned_and_switched_off_at_three_dead(
    client: httpx.Client, receiver: Receiver, smtp: SmtpServer, server: RelayhookProcess
) -> None:
    receiver.script("/flaky/", Reply(401, body=b"token expired"))
    post_until(client, 1, "dead", 1)
    mail = wait_mail(smtp, "Relayhook: hook 'flaky' failing: status 401")
    body = mail.get_content()
    assert body.startswith("hook 'flaky': status 401 since ")
    assert "Problem:     status 401 (open)" in body
    assert "In the console: https://relay.example.com/hooks/flaky" in body
    assert mail["To"] == "ops@example.com" and smtp.logins[-1] == ("relayhook", True)
    assert alerts(receiver, "hook.will_deactivate") == []

    post_until(client, 2, "dead", 2)
    (warning,) = wait_alerts(receiver, "hook.will_deactivate", 1)
    assert warning["text"] == (
        "hook 'flaky' will be deactivated after one more dead delivery; 2 in a row so far."
    )
    warned = wait_mail(
        smtp, "Relayhook: hook 'flaky' will be deactivated after one more dead delivery"
    )
    assert warned.get_content().startswith(warning["text"])
    assert hook_state(client) == (True, None)

    post_until(client, 3, "dead", 3)
    (deactivated,) = wait_alerts(receiver, "hook.deactivated", 1)
    assert deactivated["text"].startswith(f"hook 'flaky' was {REASON}.")
    assert deactivated["problem"]["signature"] == "deactivated: 3 dead in a row"
    wait_mail(smtp, "Relayhook: hook 'flaky' deactivated")
    assert hook_state(client) == (False, REASON)

    post_until(client, 4, "paused", 1)  # a new delivery waits, paused
    assert receiver.count("/flaky/") == 3
    assert len(alerts(receiver, "problem.opened")) == 1  # one per problem, not per delivery

    # Switched on: the paused delivery goes (dead: one in a row), the next warns again.
    activated = client.post("/api/hooks/flaky/activate", headers=AUTH)
    assert activated.status_code == 200, activated.text
    wait_until(
        lambda: len(deliveries(client, "dead")) == 4,
        timeout=WAIT,
        interval=0.05,
        what="the resumed delivery dead",
    )
    assert hook_state(client) == (True, None)
    post_until(client, 5, "dead", 5)
    wait_alerts(receiver, "hook.will_deactivate", 2)
    assert hook_state(client) == (True, None)

    # A success in between starts the count again: two more dead ones only warn.
    receiver.script("/flaky/", Reply(200))
    post_until(client, 6, "succeeded", 1)
    receiver.script("/flaky/", Reply(401))
    post_until(client, 7, "dead", 6)
    post_until(client, 8, "dead", 7)
    wait_alerts(receiver, "hook.will_deactivate", 3)
    assert hook_state(client) == (True, None)
    assert len(alerts(receiver, "hook.deactivated")) == 1

    log = server.log_path.read_text(encoding="utf-8")
    assert f"hook 'flaky' deactivated: {REASON}" in log
    assert SMTP_PASSWORD not in log
