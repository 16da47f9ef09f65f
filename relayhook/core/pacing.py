"""Pacing: a hook's rate limit as a generic cell rate algorithm (GCRA). Pure; time is passed in.

    pacer = Pacer.for_rate(per_second=25)        # one request every 40 ms
    go_at = pacer.reserve(now)                   # when this request may be sent

`reserve` never refuses: it hands out the next free slot, so a burst of 500 deliveries drains at
exactly the limit, evenly, and the receiver never sees more than the limit in any window.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # hooks -> retry -> store -> here: types only
    from relayhook.core.hooks import RateLimitSpec


@dataclass
class Pacer:
    interval: float  # seconds between requests at the sustained rate
    burst: int = 1  # requests that may go back to back
    _tat: float = field(default=0.0, repr=False)  # theoretical arrival time of the next request

    @classmethod
    def for_rate(cls, per_second: float, burst: int = 1) -> Pacer:
        return cls(1.0 / per_second, burst)

    def allowed_at(self, now: float) -> float:
        """The earliest time, from `now`, at which one more request may go."""
        return max(now, self._tat - self.interval * (self.burst - 1))

    def book(self, at: float) -> None:
        """Record a request sent at `at`."""
        self._tat = max(self._tat, at) + self.interval

    def reserve(self, now: float) -> float:
        go = self.allowed_at(now)
        self.book(go)
        return go

    def state(self) -> dict[str, Any]:
        return {"tat": self._tat}

    def restore(self, state: dict[str, Any]) -> None:
        self._tat = float(state.get("tat", 0.0))


@dataclass
class WindowLimit:
    """At most `requests` in any `window` seconds, exactly: a log of the last `requests` send
    times (a GCRA with that burst would let nearly twice as many through at a window's edge)."""

    requests: int
    window: float
    _sent: collections.deque[float] = field(default_factory=collections.deque, repr=False)

    @property
    def interval(self) -> float:
        return self.window / self.requests

    def allowed_at(self, now: float) -> float:
        if len(self._sent) < self.requests:
            return now
        return max(now, self._sent[0] + self.window)

    def book(self, at: float) -> None:
        self._sent.append(max(at, self._sent[-1]) if self._sent else at)
        if len(self._sent) > self.requests:
            self._sent.popleft()

    def state(self) -> dict[str, Any]:
        return {"sent": list(self._sent)}

    def restore(self, state: dict[str, Any]) -> None:
        self._sent = collections.deque(float(t) for t in state.get("sent", ())[-self.requests :])


@dataclass
class RateLimit:
    """A hook's limits together: per second (a Pacer) and per window (a WindowLimit)."""

    pacers: tuple[Pacer | WindowLimit, ...]

    @classmethod
    def from_spec(cls, spec: RateLimitSpec | None) -> RateLimit:
        pacers: list[Pacer | WindowLimit] = []
        if spec is not None and spec.per_second is not None:
            pacers.append(Pacer.for_rate(spec.per_second, spec.burst))
        if spec is not None and spec.requests is not None and spec.window is not None:
            pacers.append(WindowLimit(spec.requests, spec.window))
        return cls(tuple(pacers))

    @property
    def interval(self) -> float:
        """Seconds between requests at the slowest sustained rate (0: no limit)."""
        return max((pacer.interval for pacer in self.pacers), default=0.0)

    def wait(self, now: float) -> float:
        """Seconds from `now` until one more request may go (without booking it)."""
        return max([0.0, *(pacer.allowed_at(now) - now for pacer in self.pacers)])

    def reserve(self, now: float) -> float:
        """The time at which one more request may go under every limit, booked in each."""
        go = max([now, *(pacer.allowed_at(now) for pacer in self.pacers)])
        for pacer in self.pacers:
            pacer.book(go)
        return go

    def state(self) -> dict[str, Any]:
        """The bookings so far, as JSON-ready data (what dispatchers share through the store)."""
        return {type(pacer).__name__: pacer.state() for pacer in self.pacers}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state()`; a limit the state has no part for starts afresh."""
        for pacer in self.pacers:
            pacer.restore(state.get(type(pacer).__name__, {}))


def book_sends(
    spec: RateLimitSpec | None, state: dict[str, Any], now: float, count: int
) -> tuple[dict[str, Any], list[float]]:
    """Book `count` requests under `spec` after the bookings in `state`: the new state, and the
    time each request may go (ascending). What a store does in one transaction."""
    rate = RateLimit.from_spec(spec)
    rate.restore(state)
    times = [rate.reserve(now) for _ in range(count)]
    return rate.state(), times


def pacing_wait(spec: RateLimitSpec | None, state: dict[str, Any], now: float) -> float:
    """Seconds from `now` until one more request may go after the bookings in `state`."""
    rate = RateLimit.from_spec(spec)
    rate.restore(state)
    return rate.wait(now)
