"""The retry schedule: a pure function of the attempt number, the server's Retry-After and a
random source (injected, so tests are exact).

    >>> next_due(now=100.0, tries=1, schedule=(0, 5, 300), jitter=0.0, rand=random.Random(1))
    105.0
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from email.utils import parsedate_to_datetime

from relayhook.core.records import Outcome

# Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
DEFAULT_SCHEDULE: tuple[float, ...] = (
    0,
    5,
    300,
    1800,
    7200,
    18000,
    36000,
    50400,
    72000,
    86400,
)
MAX_RETRY_AFTER = 86400.0  # a server asking for more than a day is taken as a day


def next_due(
    *,
    now: float,
    tries: int,
    schedule: Sequence[float],
    jitter: float,
    rand: random.Random,
    retry_after: float | None = None,
) -> float | None:
    """When to try again after `tries` failed attempts, or None when the schedule is spent.

    `schedule[n]` is the wait before attempt n+1, so after `tries` failures the next wait is
    `schedule[tries]`, varied by up to +-`jitter` of itself, and never sooner than `retry_after`.
    """
    if tries >= len(schedule):
        return None
    delay = schedule[tries]
    if jitter and delay:
        delay *= 1 + rand.uniform(-jitter, jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return now + delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date; None if
    absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which isdigit() also accepts
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def decide(
    *,
    status: int | None,
    error_class: str | None,
    error: str | None,
    retry_after: float | None,
    tries: int,
    schedule: Sequence[float],
    jitter: float,
    now: float,
    rand: random.Random,
) -> Outcome:
    """What becomes of a delivery after its `tries`-th attempt.

    2xx: succeeded. 410 Gone: paused (the caller disables the hook). A request that could not be
    rendered or whose destination is refused: dead at once (no retry can heal it). Anything else
    (3xx, 4xx, 5xx, timeouts, connection errors): failed, due again per the schedule and no
    sooner than Retry-After on 429/503, or dead when the schedule is spent.
    """
    if status is not None and 200 <= status < 300:
        return Outcome("succeeded", response_status=status)
    if status == 410:
        return Outcome("paused", error="410 Gone: the hook was disabled", response_status=status)
    message = error or f"HTTP {status}"
    if error_class in PERMANENT_ERRORS:
        return Outcome("dead", error=message, response_status=status)
    wait = retry_after if status in (429, 503) else None
    due = next_due(
        now=now, tries=tries, schedule=schedule, jitter=jitter, rand=rand, retry_after=wait
    )
    if due is None:
        attempts = "1 attempt" if tries == 1 else f"{tries} attempts"
        return Outcome("dead", error=f"{message} (after {attempts})", response_status=status)
    return Outcome("failed", due_at=due, error=message, response_status=status)


PERMANENT_ERRORS = frozenset({"render", "destination"})
