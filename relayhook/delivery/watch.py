"""The quiet watch: a worker task that opens a relay's `quiet` problem when its provider stops
calling (relayhook.core.quiet judges; the existing alerter sends the alert) and resolves it when
traffic returns.

    watch = QuietWatch(store, lambda: live.relays.values(), settings.watch, clock=time.time)
    await watch.check()          # one look: the relays found quiet now
    task = asyncio.create_task(watch.run())
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from relayhook.core.quiet import (
    HOUR,
    SIGNATURE,
    WEEK,
    Fixed,
    Learned,
    Rule,
    Traffic,
    judge,
    recovered,
)
from relayhook.core.records import Problem
from relayhook.relays import Relay
from relayhook.settings import WatchSettings
from relayhook.store import Store, StoreError

log = logging.getLogger("relayhook.delivery.watch")
MINUTE = 60.0


def rule_for(relay: Relay, settings: WatchSettings) -> Rule:
    """The relay's fixed rule (`expect`) if it has one, else the learned rule of [watch]."""
    if relay.expect is not None:
        return Fixed(*relay.expect)
    return Learned(
        window=settings.window_minutes * MINUTE,
        ratio=settings.ratio,
        min_expected=settings.min_expected,
        weeks=settings.weeks,
        min_weeks=settings.min_weeks,
    )


@dataclass
class Recent:
    """Each relay's requests since `since`, counted per `step` seconds."""

    since: float
    step: float
    counts: dict[str, dict[int, int]] = field(default_factory=dict)

    def count(self, relay: str, after: float) -> int:
        first = math.floor((after - self.since) / self.step)
        return sum(n for bucket, n in self.counts.get(relay, {}).items() if bucket >= first)

    def first_after(self, relay: str, at: float) -> float | None:
        """When the first request at or after `at` came (to a step), or None."""
        first = math.floor((at - self.since) / self.step)
        found = [b for b, n in self.counts.get(relay, {}).items() if b >= first and n]
        return None if not found else self.since + min(found) * self.step


@dataclass
class QuietWatch:
    store: Store
    relays: Callable[[], Iterable[Relay]]
    settings: WatchSettings
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # The weeks of hourly counts, read whole once an hour; in between, only the last two
    # hours are read again (a look a minute must not scan four weeks of requests each time).
    _history: tuple[float, dict[str, dict[int, int]]] | None = None

    async def run(self) -> None:
        """Look every `interval` seconds until cancelled; a store failure is logged."""
        while True:
            try:
                await self.check()
            except StoreError as exc:
                log.error("quiet watch: the store failed: %s", exc)
            await self.sleep(self.settings.interval)

    async def check(self) -> list[str]:
        """One look at every relay: open, update or resolve its `quiet` problem; the names of
        the relays quiet now."""
        now = self.clock()
        rules = {relay.name: rule_for(relay, self.settings) for relay in self.relays()}
        open_problems = {
            p.relay: p
            for p in await self.store.list_problems(limit=1000)
            if p.relay and p.signature == SIGNATURE
        }
        for gone in sorted(open_problems.keys() - rules.keys()):  # a relay deleted meanwhile
            await self.store.resolve_relay_problem(gone, SIGNATURE, at=now)
        if not rules:
            return []
        start = math.floor(now / HOUR) * HOUR - max(self.settings.weeks, 1) * WEEK
        hourly = await self._hourly(start)
        windows = [rule.window for rule in rules.values()]
        step = max(1.0, min(MINUTE, min(windows) / 10))  # a tenth of the shortest window
        recent = Recent(now - math.ceil(max(windows) / step) * step, step)
        recent.counts = await self._counts(recent.since, step)
        quiet = []
        for name, rule in sorted(rules.items()):
            traffic = Traffic(start, hourly.get(name, {}))
            if await self._look(name, rule, traffic, recent, open_problems.get(name), now):
                quiet.append(name)
        return quiet

    async def _look(
        self,
        name: str,
        rule: Rule,
        traffic: Traffic,
        recent: Recent,
        problem: Problem | None,
        now: float,
    ) -> bool:
        if problem is not None:
            back = recent.first_after(name, problem.first_at)
            if recovered(
                rule,
                traffic,
                now=now,
                returned_at=back,
                since_returned=0 if back is None else recent.count(name, back),
            ):
                await self.store.resolve_relay_problem(name, SIGNATURE, at=now)
                log.info("relay %r: traffic returned", name)
                return False
        verdict = judge(
            rule, traffic, now=now, recent=recent.count(name, now - rule.window), last_at=None
        )
        if verdict is None or not verdict.quiet:
            if problem is not None and verdict is None:
                # the rule cannot tell any more (history pruned, rule changed): let it go
                await self.store.resolve_relay_problem(name, SIGNATURE, at=now)
            return False
        verdict = judge(
            rule,
            traffic,
            now=now,
            recent=verdict.received,  # "no request for 3 h"
            last_at=await self._last_at(name),
        )
        if verdict is not None and await self.store.open_relay_problem(
            name, SIGNATURE, verdict.text, at=now
        ):
            log.warning("relay %r: %s", name, verdict.text)
        return True

    async def _hourly(self, start: float) -> dict[str, dict[int, int]]:
        if self._history is None or self._history[0] != start:
            self._history = (start, await self._counts(start, HOUR))
            return self._history[1]
        recent_from = start + max(self.settings.weeks, 1) * WEEK - HOUR  # the last two hours
        offset = round((recent_from - start) / HOUR)
        history = self._history[1]
        for counts in history.values():
            for hour in [h for h in counts if h >= offset]:
                del counts[hour]
        for relay, counts in (await self._counts(recent_from, HOUR)).items():
            history.setdefault(relay, {}).update({offset + h: n for h, n in counts.items()})
        return history

    async def _counts(self, since: float, bucket: float) -> dict[str, dict[int, int]]:
        counts: dict[str, dict[int, int]] = defaultdict(dict)
        for relay, index, _status, count in await self.store.request_activity(
            since=since, bucket_seconds=bucket
        ):
            counts[relay][index] = counts[relay].get(index, 0) + count
        return counts

    async def _last_at(self, relay: str) -> float | None:
        newest = await self.store.list_requests(relay=relay, limit=1)
        if not newest:
            return None
        return datetime.fromisoformat(newest[0].received_at.replace("Z", "+00:00")).timestamp()
