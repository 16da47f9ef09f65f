"""Alerts: when a problem opens, a JSON POST to the user's `[alerts] webhook` and an e-mail to
`[alerts.email] to` (either or both): a new cause of failure, a hook deactivated by a 410 (its
problem's signature is `status 410`) or by `[alerts] disable_after`, and the warning one dead
delivery before that (relayhook.core.problems.alert_kind).

The alerter looks for open problems not yet alerted about every `interval`; of several worker
processes, the one whose `mark_problem_notified` wins sends (at most once: a problem is marked
before its alert goes, so a crash in between loses that alert rather than sending it twice). Each
channel is tried `TRIES` times, on its own (a failing webhook does not hold the e-mail back),
then the failure is logged. The webhook goes through the dispatcher's guarded transport: the
destination checks that hold for deliveries hold for alerts.

    {"type": "relayhook.problem.opened", "text": "hook 'hubspot': status 401 since ...",
     "problem": {"id": ..., "hook": ..., "signature": "status 401", ...}}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from relayhook.core.problems import alert_kind, alert_text, problem_json
from relayhook.core.records import Problem
from relayhook.delivery.mail import Mailer, MailError
from relayhook.delivery.sender import sender_for
from relayhook.settings import AlertsSettings
from relayhook.store import StoreError
from relayhook.store.base import DeliveryStore, HistoryStore

log = logging.getLogger("relayhook.delivery.alerts")

TRIES = 3
TIMEOUT = 10.0


class AlertError(Exception):
    """One try of a channel failed; the message says why, without secrets."""


class Channel(Protocol):
    name: str

    async def send(self, problem: Problem) -> None:
        """Send the alert about `problem` once; AlertError if that failed."""


def alert_body(problem: Problem) -> dict[str, object]:
    """What the alert webhook receives for a newly opened problem."""
    kind = alert_kind(problem.signature, problem.relay)
    return {
        "type": f"relayhook.{kind}",
        "text": alert_text(problem),
        "problem": problem_json(problem),
    }


@dataclass
class WebhookChannel:
    transport: httpx.AsyncBaseTransport
    url: str
    name: str = "the alerts webhook"

    async def send(self, problem: Problem) -> None:
        content = json.dumps(alert_body(problem), ensure_ascii=False).encode()
        headers = (("content-type", "application/json"), ("user-agent", "relayhook-alerts"))
        try:  # the dispatcher's way to send: one exchange, bounded by TIMEOUT, body included
            reply = await sender_for(self.transport).send(
                "POST", self.url, headers, content, timeout=TIMEOUT, limit=1024
            )
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            why = f"{type(exc).__name__}: {exc}".replace(self.url, f"[{self.name}]")
            raise AlertError(why) from None  # the URL may hold a token
        if not 200 <= reply.status < 300:
            raise AlertError(f"HTTP {reply.status}")


@dataclass
class EmailChannel:
    mailer: Mailer
    name: str = "e-mail"

    async def send(self, problem: Problem) -> None:
        try:
            await asyncio.to_thread(self.mailer.send, self.mailer.message(problem))
        except MailError as exc:
            raise AlertError(str(exc)) from None


def alert_channels(
    settings: AlertsSettings, transport: httpx.AsyncBaseTransport, console_url: str | None = None
) -> list[Channel]:
    """Where alerts go: `webhook` (through `transport`, the guarded one of deliveries) and
    `email`; none, one or both."""
    channels: list[Channel] = []
    if settings.webhook:
        channels.append(WebhookChannel(transport, settings.webhook))
    mail = settings.email
    if mail.to:
        channels.append(
            EmailChannel(
                Mailer(
                    mail.host,
                    mail.port,
                    mail.sender,
                    tuple(mail.to),
                    mail.username,
                    mail.password.get_secret_value(),
                    mail.tls,
                    mail.timeout,
                    console_url,
                )
            )
        )
    return channels


class AlertStore(HistoryStore, DeliveryStore, Protocol):
    """The alerter reads the open problems and marks each one's alert as sent, once."""


@dataclass
class Alerter:
    store: AlertStore
    channels: Sequence[Channel]
    interval: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def run(self) -> None:
        """Alert until cancelled; a store failure is logged and tried again."""
        while True:
            try:
                await self.alert_new()
            except StoreError as exc:
                log.error("alerts: the store failed: %s", exc)
            await self.sleep(self.interval)

    async def alert_new(self) -> int:
        """Send the alerts of open problems none was sent for; how many sends succeeded here
        (one per problem and channel)."""
        sent = 0
        for problem in await self.store.list_problems(statuses=("open",), limit=100):
            if not problem.notified and await self.store.mark_problem_notified(problem.id):
                done = await asyncio.gather(
                    *(self.send(channel, problem) for channel in self.channels)
                )
                sent += sum(done)
        return sent

    async def send(self, channel: Channel, problem: Problem) -> bool:
        for attempt in range(1, TRIES + 1):
            try:
                await channel.send(problem)
                return True
            except AlertError as exc:
                log.warning(
                    "alerts: sending an alert by %s failed (%s), attempt %d of %d",
                    channel.name,
                    exc,
                    attempt,
                    TRIES,
                )
            if attempt < TRIES:
                await self.sleep(attempt)
        log.error("alerts: gave up on an alert by %s: %s", channel.name, alert_text(problem))
        return False
