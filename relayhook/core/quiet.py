"""A provider that goes quiet: is a relay receiving far less than usual?

Pure arithmetic over request counts the store gives (relayhook.runtime's quiet check asks it):
`hourly` counts per hour since `Traffic.start` (an hour boundary, `weeks` weeks back), and the
requests of the last `window`. Two rules:

- learned: the usual rate of each hour is the median of the same hour of the week over the
  past weeks (those the relay already had traffic in); the relay is quiet when the last
  `window` brought at most `ratio` of what those hours usually bring, and they usually bring
  at least `min_expected` (so a relay that gets 2 requests a day never pages anyone);
- fixed (`expect = { at_least = N, minutes = M }`, for new relays): fewer than N in the
  last M minutes.

Either resolves once the traffic since the first request after the silence is back above
its threshold.

>>> rule = Learned(window=3 * HOUR)
>>> history = {h: 50 for h in range(4 * WEEK_HOURS)}   # 50 an hour, four weeks long
>>> verdict = judge(rule, Traffic(start=0.0, hourly=history), now=4 * WEEK, recent=0,
...                 last_at=4 * WEEK - 3 * HOUR)
>>> verdict.text
'no request for 3 h; usually 50 an hour on Thursdays at this time (UTC)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import median

HOUR = 3600.0
WEEK_HOURS = 168
WEEK = WEEK_HOURS * HOUR
SIGNATURE = "quiet"


@dataclass(frozen=True, slots=True)
class Learned:
    """Far less than usual: at most `ratio` of the usual count over `window` seconds, when
    that usually is at least `min_expected`; learned from `weeks` weeks, needing `min_weeks`."""

    window: float = 2 * HOUR
    ratio: float = 0.1
    min_expected: float = 10.0
    weeks: int = 4
    min_weeks: int = 2


@dataclass(frozen=True, slots=True)
class Fixed:
    """At least `at_least` requests per `minutes` minutes."""

    at_least: int
    minutes: float

    @property
    def window(self) -> float:
        return self.minutes * 60.0


Rule = Learned | Fixed


@dataclass(frozen=True, slots=True)
class Traffic:
    """Requests per hour: `hourly[i]` counts those of the hour starting `start + i * HOUR`."""

    start: float
    hourly: Mapping[int, int]

    def count(self, hour: int) -> int:
        return self.hourly.get(hour, 0)

    def first_hour(self) -> int | None:
        seen = [hour for hour, count in self.hourly.items() if count > 0]
        return min(seen) if seen else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """`quiet` or not; `text` says it in words ("no request for 3 h; usually 40-60 an hour on
    Thursdays at this time (UTC)"); `expected` what the window usually brings."""

    quiet: bool
    text: str
    expected: float
    received: int


def usual(rule: Learned, traffic: Traffic, hour: int) -> list[int] | None:
    """What the same hour of the week brought in the past weeks the relay had traffic in; None
    when fewer than `min_weeks` of them are known (too new to tell)."""
    first = traffic.first_hour()
    if first is None:
        return None
    weeks = [hour - k * WEEK_HOURS for k in range(1, rule.weeks + 1)]
    counts = [traffic.count(h) for h in weeks if h >= first]
    return counts if len(counts) >= rule.min_weeks else None


def expected_between(rule: Learned, traffic: Traffic, start: float, end: float) -> float | None:
    """How many requests [start, end) usually brings: each hour's median, pro rata."""
    total = 0.0
    at = start
    for _ in range(int((end - start) / HOUR) + 2):  # bounded: one step per hour touched
        if at >= end:
            break
        hour = math.floor((at - traffic.start) / HOUR)
        hour_end = min(end, traffic.start + (hour + 1) * HOUR)
        counts = usual(rule, traffic, hour)
        if counts is None:
            return None
        total += median(counts) * (hour_end - at) / HOUR
        at = hour_end
    return total


def judge(
    rule: Rule, traffic: Traffic, *, now: float, recent: int, last_at: float | None
) -> Verdict | None:
    """Is the relay quiet now? `recent` counts its requests in the last `rule.window`,
    `last_at` is when its newest request came (None: never). None when the rule cannot tell
    (a learned rule without `min_weeks` of history, or too little usual traffic)."""
    start = now - rule.window
    if isinstance(rule, Fixed):
        threshold = float(rule.at_least)
        quiet = recent < rule.at_least
        usually = f"expected at least {rule.at_least} per {_duration(rule.window)}"
        expected = threshold
    else:
        found = expected_between(rule, traffic, start, now)
        if found is None or found < rule.min_expected:
            return None
        expected = found
        quiet = recent <= rule.ratio * expected
        usually = _usually(rule, traffic, now)
    return Verdict(
        quiet, f"{_received(recent, rule.window, now, last_at)}; {usually}", expected, recent
    )


def recovered(
    rule: Rule, traffic: Traffic, *, now: float, returned_at: float | None, since_returned: int
) -> bool:
    """Has traffic returned? `returned_at` is when the first request since the problem opened
    came (None: none yet), `since_returned` counts the requests from then on: they must reach
    the threshold of that stretch (at most one window long), a learned rule's `ratio` of what
    it usually brings, a fixed rule's rate.

    >>> rule, busy = Learned(), Traffic(0.0, {h: 60 for h in range(4 * WEEK_HOURS)})
    >>> recovered(rule, busy, now=4 * WEEK, returned_at=4 * WEEK - 60, since_returned=3)
    True
    >>> recovered(rule, busy, now=4 * WEEK, returned_at=4 * WEEK - HOUR, since_returned=3)
    False
    """
    if returned_at is None or since_returned < 1:
        return False
    start = max(returned_at, now - rule.window)
    if isinstance(rule, Fixed):
        return since_returned >= rule.at_least * (now - start) / rule.window
    expected = expected_between(rule, traffic, start, now)
    return expected is None or since_returned >= rule.ratio * expected


def _received(recent: int, window: float, now: float, last_at: float | None) -> str:
    if recent == 0:
        if last_at is None:
            return "no request yet"
        return f"no request for {_duration(now - last_at)}"
    plural = "request" if recent == 1 else "requests"
    text = f"only {recent} {plural} in the last {_duration(window)}"
    if last_at is not None and now - last_at >= 600:
        text += f", none for {_duration(now - last_at)}"
    return text


def _usually(rule: Learned, traffic: Traffic, now: float) -> str:
    counts = usual(rule, traffic, math.floor((now - traffic.start) / HOUR)) or [0]
    low, high = min(counts), max(counts)
    span = f"{low}" if low == high else f"{low}-{high}"
    day = datetime.fromtimestamp(now, UTC).strftime("%A")
    return f"usually {span} an hour on {day}s at this time (UTC)"


def _duration(seconds: float) -> str:
    """3 h, 2 h 30 min, 45 min, 20 s."""
    if seconds < 60:
        return f"{max(0, round(seconds))} s"
    minutes = round(seconds / 60)
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"
