"""Alerts: a JSON POST to the user's `[alerts] webhook` when a problem opens, or when a 410
deactivated a hook (its problem's signature is `status 410`).

The alerter looks for open problems not yet alerted about every `interval`; of several worker
processes, the one whose `mark_problem_notified` wins sends (at most once: a problem is marked
before its alert goes, so a crash in between loses that alert rather than sending it twice; a
refused or failed send is tried `TRIES` times, then logged). It sends through the dispatcher's
guarded transport: the destination checks that hold for deliveries hold for alerts.

    {"type": "relayhook.problem.opened", "text": "hook 'hubspot': status 401 since ...",
     "problem": {"id": ..., "hook": ..., "signature": "status 401", ...}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from relayhook.problems import describe_problem, problem_json
from relayhook.records import Problem
from relayhook.store import Store, StoreError

log = logging.getLogger("relayhook.delivery.alerts")

TRIES = 3
TIMEOUT = 10.0


def alert_body(problem: Problem) -> dict[str, object]:
    """What the alert webhook receives for a newly opened problem."""
    if problem.signature == "status 410":
        return {"type": "relayhook.hook.deactivated",
                "text": f"hook {problem.hook!r} was deactivated: its receiver answered 410 Gone."
                        " Its new deliveries wait, paused, until it is switched back on.",
                "problem": problem_json(problem)}
    return {"type": "relayhook.problem.opened", "text": describe_problem(problem),
            "problem": problem_json(problem)}


@dataclass
class Alerter:
    store: Store
    transport: httpx.AsyncBaseTransport
    url: str
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
        """Send the alerts of open problems none was sent for; how many this process sent."""
        sent = 0
        for problem in await self.store.list_problems(statuses=("open",), limit=100):
            if not problem.notified and await self.store.mark_problem_notified(problem.id):
                sent += await self.send(alert_body(problem))
        return sent

    async def send(self, body: dict[str, object]) -> bool:
        content = json.dumps(body, ensure_ascii=False).encode()
        for attempt in range(1, TRIES + 1):
            request = httpx.Request("POST", self.url, content=content,
                                    headers={"content-type": "application/json",
                                             "user-agent": "relayhook-alerts"},
                                    extensions={"timeout": httpx.Timeout(TIMEOUT).as_dict()})
            try:
                async with asyncio.timeout(TIMEOUT + 1):
                    response = await self.transport.handle_async_request(request)
                    with contextlib.suppress(httpx.HTTPError):
                        await response.aread()
                    await response.aclose()
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
            problem = problem.replace(self.url, "[the alerts webhook]")  # it may hold a token
            log.warning("alerts: sending an alert failed (%s), attempt %d of %d", problem,
                        attempt, TRIES)
            if attempt < TRIES:
                await self.sleep(attempt)
        log.error("alerts: gave up on an alert: %s", body.get("text"))
        return False
