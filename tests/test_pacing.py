"""Pacing: a hook's rate limits as reservations in time. Pure: time is passed in.

The property every limit must keep: no window of its length (half-open, [t, t + w)) holds more
requests than the limit allows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from relayhook.core.hooks import RateLimitSpec
from relayhook.core.pacing import Pacer, RateLimit

EPSILON = 1e-6  # float sums of 0.04 drift by far less


def most_in_window(times: Sequence[float], window: float) -> int:
    """The largest number of `times` in any half-open window [t, t + window)."""
    ordered = sorted(times)
    most, end = 0, 0
    for start, first in enumerate(ordered):
        end = max(end, start)
        while end < len(ordered) and ordered[end] < first + window - EPSILON:
            end += 1
        most = max(most, end - start)
    return most


def most_in_closed_window(times: Sequence[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        sum(1 for t in ordered if first <= t <= first + window + EPSILON) for first in ordered
    )


def test_most_in_window_counts_half_open_windows() -> None:
    assert most_in_window([0.0, 0.5, 1.0, 1.5], 1.0) == 2
    assert most_in_closed_window([0.0, 0.5, 1.0, 1.5], 1.0) == 3


# -- one pacer --------------------------------------------------------------------------------


def test_500_reservations_at_25_per_second_are_spaced_40_ms() -> None:
    pacer = Pacer.for_rate(25)
    times = [pacer.reserve(0.0) for _ in range(500)]
    assert times[0] == 0.0
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(gap == pytest.approx(0.04) for gap in gaps)
    assert times[-1] == pytest.approx(499 * 0.04)
    assert most_in_window(times, 1.0) == 25
    assert most_in_closed_window(times, 1.0) <= 25 + 1


def test_a_pacer_does_not_hold_back_requests_that_arrive_slowly() -> None:
    pacer = Pacer.for_rate(25)
    assert [pacer.reserve(t) for t in (0.0, 0.1, 0.2, 1.0)] == [0.0, 0.1, 0.2, 1.0]


def test_a_pacer_never_hands_out_a_time_before_now() -> None:
    pacer = Pacer.for_rate(10)
    assert pacer.reserve(100.0) == 100.0
    assert pacer.reserve(100.0) == pytest.approx(100.1)
    assert pacer.reserve(500.0) == 500.0


def test_a_burst_goes_at_once_then_the_rate_applies() -> None:
    pacer = Pacer.for_rate(25, burst=5)
    times = [pacer.reserve(0.0) for _ in range(8)]
    assert times[:5] == [0.0] * 5
    assert times[5:] == pytest.approx([0.04, 0.08, 0.12])


def test_a_burst_refills_while_idle() -> None:
    pacer = Pacer.for_rate(10, burst=3)
    first = [pacer.reserve(0.0) for _ in range(3)]
    later = [pacer.reserve(10.0) for _ in range(4)]
    assert first == [0.0, 0.0, 0.0]
    assert later == pytest.approx([10.0, 10.0, 10.0, 10.1])


def test_a_burst_keeps_the_long_run_rate() -> None:
    pacer = Pacer.for_rate(25, burst=5)
    times = [pacer.reserve(0.0) for _ in range(505)]
    assert times[-1] == pytest.approx(500 * 0.04)
    assert most_in_window(times, 1.0) <= 25 + 5 - 1


# -- the limits of a hook ---------------------------------------------------------------------


def test_no_limit_sends_at_once() -> None:
    limit = RateLimit.from_spec(None)
    assert [limit.reserve(t) for t in (0.0, 0.0, 0.0, 3.0)] == [0.0, 0.0, 0.0, 3.0]


@pytest.mark.parametrize(
    ("requests", "window"),
    [
        pytest.param(10, 1.0, id="10 per second"),
        pytest.param(100, 10.0, id="100 per 10 s (HubSpot)"),
        pytest.param(3, 60.0, id="3 per minute"),
    ],
)
def test_a_window_limit_holds_in_every_window(requests: int, window: float) -> None:
    limit = RateLimit.from_spec(RateLimitSpec(requests=requests, window=window))
    times = [limit.reserve(0.0) for _ in range(requests * 5)]
    assert most_in_window(times, window) <= requests
    assert times[-1] <= 5 * window  # and it drains at about the limit, not slower


@pytest.mark.parametrize(
    ("spec", "limits"),
    [
        pytest.param(RateLimitSpec(per_second=25), [(25, 1.0)], id="25/s"),
        pytest.param(RateLimitSpec(per_second=25, burst=5), [(29, 1.0)], id="25/s, burst 5"),
        pytest.param(RateLimitSpec(requests=20, window=2.0), [(20, 2.0)], id="20 per 2 s"),
        pytest.param(
            RateLimitSpec(per_second=25, requests=100, window=10.0),
            [(25, 1.0), (100, 10.0)],
            id="25/s and 100 per 10 s",
        ),
        pytest.param(
            RateLimitSpec(per_second=9, burst=3, requests=50, window=7.0),
            [(11, 1.0), (50, 7.0)],
            id="9/s burst 3 and 50 per 7 s",
        ),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_arrivals_never_break_a_limit(
    spec: RateLimitSpec, limits: list[tuple[int, float]], seed: int
) -> None:
    rand = random.Random(seed)
    limit = RateLimit.from_spec(spec)
    now, arrivals, times = 0.0, [], []
    for _ in range(600):
        now += rand.choice([0.0, 0.0, rand.expovariate(20.0), rand.uniform(0, 3)])
        arrivals.append(now)
        times.append(limit.reserve(now))
    assert all(go >= arrived for go, arrived in zip(times, arrivals, strict=True))
    assert times == sorted(times)  # first come, first served
    for most, window in limits:
        assert most_in_window(times, window) <= most, (most, window)


def test_a_single_rate_sends_as_soon_as_it_may() -> None:
    # Work-conserving: each request goes at its arrival or one interval after the one before.
    rand = random.Random(11)
    limit = RateLimit.from_spec(RateLimitSpec(per_second=20))
    now, previous = 0.0, None
    for _ in range(300):
        now += rand.uniform(0, 0.1)
        go = limit.reserve(now)
        expected = now if previous is None else max(now, previous + 0.05)
        assert go == pytest.approx(expected)
        previous = go
