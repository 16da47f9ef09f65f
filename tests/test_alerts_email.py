"""E-mail alerts through a real SMTP server on 127.0.0.1 (tests/smtp.py): the alert about a
problem arrives once with its subject, text and console link; the SMTP password never shows in
a log line or an error; an unreachable or refusing server is tried TRIES times and logged, and
the webhook is sent all the same."""

from __future__ import annotations

import logging

import httpx
import pytest
from servers import free_port
from smtp import SmtpServer
from test_alerts import no_wait
from test_store import run
from test_store_problems import finish, seed

from relayhook.core.records import Outcome, Problem
from relayhook.delivery.alerts import TRIES, Alerter, EmailChannel, WebhookChannel
from relayhook.delivery.mail import Mailer
from relayhook.store import Store

PASSWORD = "smtp-Pa55word-never-shown"
SENDER = "Relayhook <relayhook@example.com>"
WAIT = 10.0


def mailer(port: int, password: str = PASSWORD, **kwargs: object) -> Mailer:
    return Mailer(
        "127.0.0.1",
        port,
        SENDER,
        ("ops@example.com", "oncall@example.com"),
        "relayhook",
        password,
        "none",
        5.0,
        **kwargs,
    )  # type: ignore[arg-type]


def a_401(store: Store) -> None:
    seed(store, "crm", 1)
    finish(store, "crm", Outcome("dead", response_status=401), 401)


def test_an_opened_problem_is_mailed_once_with_its_subject_text_and_console_link(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    a_401(store)
    with SmtpServer(login=("relayhook", PASSWORD)) as smtp, caplog.at_level(logging.DEBUG):
        channel = EmailChannel(mailer(smtp.port, console_url="https://relay.example.com/"))
        alerter = Alerter(store, [channel], sleep=no_wait)
        assert run(alerter.alert_new()) == 1
        [message] = smtp.wait_for(1, WAIT)
        assert run(alerter.alert_new()) == 0  # marked: sent once
        assert smtp.logins == [("relayhook", True)]
        assert smtp.envelopes == [
            ("relayhook@example.com", ["ops@example.com", "oncall@example.com"])
        ]
    assert message["Subject"] == "Relayhook: hook 'crm' failing: status 401"
    assert message["From"] == SENDER
    assert message["To"] == "ops@example.com, oncall@example.com"
    body = message.get_content()
    assert body.startswith("hook 'crm': status 401 since ")
    assert "Problem:     status 401 (open)" in body
    assert "In the console: https://relay.example.com/hooks/crm" in body
    (problem,) = run(store.list_problems(hook="crm"))
    assert f"Problem id:  {problem.id}" in body and problem.notified
    assert PASSWORD not in caplog.text and PASSWORD not in body


def test_a_refused_login_is_tried_then_given_up_without_showing_the_password(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    a_401(store)
    with SmtpServer(login=("relayhook", "the-right-one")) as smtp, caplog.at_level(logging.WARNING):
        alerter = Alerter(store, [EmailChannel(mailer(smtp.port))], sleep=no_wait)
        assert run(alerter.alert_new()) == 0
        # smtplib tries each mechanism the server offers (PLAIN, LOGIN) before it gives up
        assert set(smtp.logins) == {("relayhook", False)} and len(smtp.logins) >= TRIES
        assert smtp.received() == []
    assert caplog.text.count("SMTPAuthenticationError") == TRIES
    assert "gave up on an alert by e-mail: hook 'crm': status 401" in caplog.text
    assert PASSWORD not in caplog.text


def test_an_unreachable_smtp_server_is_logged_and_the_webhook_still_sent(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    a_401(store)
    posted: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(204)

    port = free_port()  # nothing listens there
    channels = [
        EmailChannel(mailer(port)),
        WebhookChannel(httpx.MockTransport(answer), "https://alerts.example/hook"),
    ]
    with caplog.at_level(logging.WARNING):
        assert run(Alerter(store, channels, sleep=no_wait).alert_new()) == 1  # the webhook's
    assert len(posted) == 1
    refused = [r.getMessage() for r in caplog.records if "by e-mail failed" in r.getMessage()]
    assert len(refused) == TRIES and f"127.0.0.1:{port}: ConnectionRefusedError" in refused[0]
    assert "gave up on an alert by e-mail" in caplog.text
    assert PASSWORD not in caplog.text


def problem(signature: str) -> Problem:
    return Problem(
        "prb_1",
        "hubspot",
        signature,
        "open",
        1_700_000_000.0,
        1_700_000_000.0,
        1,
        "HTTP 500",
        None,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("signature", "subject", "first_line"),
    [
        pytest.param(
            "status 401",
            "Relayhook: hook 'hubspot' failing: status 401",
            "hook 'hubspot': status 401 since 2023-11-14 22:13 UTC, 1 delivery",
            id="a new cause of failure",
        ),
        pytest.param(
            "will deactivate: 4 dead in a row",
            "Relayhook: hook 'hubspot' will be deactivated after one more dead delivery",
            "hook 'hubspot' will be deactivated after one more dead delivery; 4 in a row so far.",
            id="one dead delivery before disable_after",
        ),
        pytest.param(
            "deactivated: 5 dead in a row",
            "Relayhook: hook 'hubspot' deactivated",
            "hook 'hubspot' was deactivated after 5 dead deliveries in a row. Its new"
            " deliveries wait, paused, until it is switched back on.",
            id="disable_after reached",
        ),
        pytest.param(
            "status 410",
            "Relayhook: hook 'hubspot' deactivated",
            "hook 'hubspot' was deactivated: its receiver answered 410 Gone. Its new"
            " deliveries wait, paused, until it is switched back on.",
            id="a 410",
        ),
    ],
)
def test_each_kind_of_alert_has_its_subject(signature: str, subject: str, first_line: str) -> None:
    message = mailer(25).message(problem(signature))
    assert message["Subject"] == subject
    assert message.get_content().splitlines()[0] == first_line
    assert "In the console" not in message.get_content()  # no console URL known
    assert PASSWORD not in repr(mailer(25))
