"""The alerter with a mock transport (unit): one alert per new open problem, tried TRIES times
when the webhook fails, and the webhook's URL (it may hold a token) never logged."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from test_store import run
from test_store_problems import finish, seed

from relayhook.core.records import Outcome
from relayhook.delivery.alerts import TRIES, Alerter, WebhookChannel
from relayhook.store import Store

URL = "https://alerts.example/hook/SECRET-TOKEN-123"


async def no_wait(seconds: float) -> None:
    return None


def test_a_failing_webhook_is_tried_then_given_up_without_logging_its_url(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError(f"cannot reach {URL}")

    seed(store, "crm", 1)
    finish(store, "crm", Outcome("dead", response_status=401), 401)
    alerter = Alerter(store, [WebhookChannel(httpx.MockTransport(answer), URL)], sleep=no_wait)
    with caplog.at_level(logging.WARNING):
        assert run(alerter.alert_new()) == 0
    assert len(seen) == TRIES
    assert json.loads(seen[0].content)["problem"]["signature"] == "status 401"
    assert "SECRET-TOKEN" not in caplog.text and "gave up" in caplog.text
    assert run(alerter.alert_new()) == 0 and len(seen) == TRIES  # marked: not sent again
