"""The retry schedule, Retry-After and what becomes of a delivery after an attempt. Pure."""

from __future__ import annotations

import random
from email.utils import formatdate
from typing import Any

import pytest

from relayhook.core.retry import (
    DEFAULT_SCHEDULE,
    MAX_RETRY_AFTER,
    decide,
    next_due,
    parse_retry_after,
)
from relayhook.store import Outcome

NOW = 1_714_564_800.0
SHORT = (0, 5, 300)
DAY = 86400.0


def test_the_default_schedule_is_standard_webhooks() -> None:
    assert DEFAULT_SCHEDULE == (
        0,
        5,
        5 * 60,
        30 * 60,
        2 * 3600,
        5 * 3600,
        10 * 3600,
        14 * 3600,
        20 * 3600,
        24 * 3600,
    )


@pytest.mark.parametrize(
    ("tries", "schedule", "retry_after", "expected"),
    [
        pytest.param(1, SHORT, None, NOW + 5, id="first failure: schedule[1]"),
        pytest.param(2, SHORT, None, NOW + 300, id="second failure: schedule[2]"),
        pytest.param(0, SHORT, None, NOW, id="no failure yet: schedule[0]"),
        pytest.param(3, SHORT, None, None, id="schedule spent"),
        pytest.param(7, SHORT, None, None, id="well past the schedule"),
        pytest.param(1, (0,), None, None, id="a single attempt"),
        pytest.param(9, DEFAULT_SCHEDULE, None, NOW + DAY, id="the default's last wait: a day"),
        pytest.param(10, DEFAULT_SCHEDULE, None, None, id="the default: ten attempts"),
        pytest.param(1, SHORT, 30.0, NOW + 30, id="Retry-After raises the wait"),
        pytest.param(2, SHORT, 30.0, NOW + 300, id="Retry-After never lowers it"),
        pytest.param(1, SHORT, 0.0, NOW + 5, id="Retry-After 0 changes nothing"),
        pytest.param(1, SHORT, 10 * DAY, NOW + DAY, id="Retry-After capped at a day"),
        pytest.param(
            1, (0, 2 * DAY), 10.0, NOW + 2 * DAY, id="the cap is on Retry-After, not the schedule"
        ),
        pytest.param(3, SHORT, 30.0, None, id="Retry-After does not extend a spent schedule"),
    ],
)
def test_next_due(
    tries: int, schedule: tuple[float, ...], retry_after: float | None, expected: float | None
) -> None:
    due = next_due(
        now=NOW,
        tries=tries,
        schedule=schedule,
        jitter=0.0,
        rand=random.Random(1),
        retry_after=retry_after,
    )
    assert due == expected


def test_the_cap_is_a_day() -> None:
    assert MAX_RETRY_AFTER == DAY


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("wait", [5.0, 300.0, DAY])
def test_jitter_stays_within_its_fraction(jitter: float, wait: float) -> None:
    rand = random.Random(20240501)
    dues = [
        next_due(now=NOW, tries=1, schedule=(0, wait), jitter=jitter, rand=rand)
        for _ in range(2000)
    ]
    delays = [due - NOW for due in dues if due is not None]
    assert len(delays) == 2000
    assert all(wait * (1 - jitter) <= d <= wait * (1 + jitter) for d in delays)
    assert min(delays) < wait * (1 - jitter / 2) and max(delays) > wait * (1 + jitter / 2)


def test_jitter_is_exact_with_a_seeded_random() -> None:
    def dues(seed: int) -> list[float | None]:
        rand = random.Random(seed)
        return [
            next_due(now=NOW, tries=n, schedule=DEFAULT_SCHEDULE, jitter=0.1, rand=rand)
            for n in range(1, 10)
        ]

    assert dues(7) == dues(7)
    assert dues(7) != dues(8)


def test_jitter_does_not_delay_an_immediate_attempt() -> None:
    assert next_due(now=NOW, tries=0, schedule=(0, 5), jitter=1.0, rand=random.Random(3)) == NOW


def test_jitter_never_goes_below_retry_after() -> None:
    rand = random.Random(5)
    for _ in range(500):
        due = next_due(now=NOW, tries=1, schedule=(0, 100), jitter=0.5, rand=rand, retry_after=120)
        assert due is not None and NOW + 120 <= due <= NOW + 150


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 7 ", 7.0, id="seconds with spaces"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param(formatdate(NOW + 90, usegmt=True), 90.0, id="an HTTP date"),
        pytest.param(formatdate(NOW - 90, usegmt=True), 0.0, id="an HTTP date in the past"),
        pytest.param("Wed, 01 May 2024 12:02:00 GMT", 120.0, id="an HTTP date, literally"),
        pytest.param("garbage", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param("-5", None, id="negative"),
        pytest.param("1.5", None, id="not an integer"),
        pytest.param("²", None, id="a superscript digit (str.isdigit, not a number)"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def outcome(
    status: int | None,
    *,
    tries: int = 1,
    error_class: str | None = None,
    error: str | None = None,
    retry_after: float | None = None,
) -> Outcome:
    return decide(
        status=status,
        error_class=error_class,
        error=error,
        retry_after=retry_after,
        tries=tries,
        schedule=SHORT,
        jitter=0.0,
        now=NOW,
        rand=random.Random(1),
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"status": 200}, Outcome("succeeded", response_status=200), id="200"),
        pytest.param({"status": 204}, Outcome("succeeded", response_status=204), id="204"),
        pytest.param({"status": 299}, Outcome("succeeded", response_status=299), id="299"),
        pytest.param(
            {"status": 200, "tries": 3},
            Outcome("succeeded", response_status=200),
            id="success at the last attempt",
        ),
        pytest.param(
            {"status": 410},
            Outcome("paused", error="410 Gone: the hook was disabled", response_status=410),
            id="410 pauses",
        ),
        pytest.param(
            {"status": 301},
            Outcome("failed", NOW + 5, "HTTP 301", 301),
            id="301 is a failure (not followed)",
        ),
        pytest.param({"status": 302}, Outcome("failed", NOW + 5, "HTTP 302", 302), id="302"),
        pytest.param({"status": 304}, Outcome("failed", NOW + 5, "HTTP 304", 304), id="304"),
        pytest.param({"status": 100}, Outcome("failed", NOW + 5, "HTTP 100", 100), id="1xx"),
        pytest.param({"status": 400}, Outcome("failed", NOW + 5, "HTTP 400", 400), id="400"),
        pytest.param({"status": 404}, Outcome("failed", NOW + 5, "HTTP 404", 404), id="404"),
        pytest.param(
            {"status": 429, "retry_after": 30.0},
            Outcome("failed", NOW + 30, "HTTP 429", 429),
            id="429 with Retry-After",
        ),
        pytest.param(
            {"status": 429},
            Outcome("failed", NOW + 5, "HTTP 429", 429),
            id="429 without Retry-After",
        ),
        pytest.param(
            {"status": 503, "retry_after": 60.0},
            Outcome("failed", NOW + 60, "HTTP 503", 503),
            id="503 with Retry-After",
        ),
        pytest.param(
            {"status": 500, "retry_after": 60.0},
            Outcome("failed", NOW + 5, "HTTP 500", 500),
            id="Retry-After counts on 429 and 503 only",
        ),
        pytest.param(
            {"status": 429, "retry_after": 1.0},
            Outcome("failed", NOW + 5, "HTTP 429", 429),
            id="a short Retry-After does not hasten",
        ),
        pytest.param({"status": 500}, Outcome("failed", NOW + 5, "HTTP 500", 500), id="500"),
        pytest.param(
            {"status": 500, "tries": 2},
            Outcome("failed", NOW + 300, "HTTP 500", 500),
            id="500 again",
        ),
        pytest.param(
            {"status": 500, "tries": 3},
            Outcome("dead", error="HTTP 500 (after 3 attempts)", response_status=500),
            id="500 at the end: dead",
        ),
        pytest.param(
            {"status": 429, "tries": 3, "retry_after": 5.0},
            Outcome("dead", error="HTTP 429 (after 3 attempts)", response_status=429),
            id="429 at the end: dead",
        ),
        pytest.param(
            {"status": None, "error_class": "render", "error": "url: undefined"},
            Outcome("dead", error="url: undefined"),
            id="render error: dead at once",
        ),
        pytest.param(
            {
                "status": None,
                "error_class": "destination",
                "error": "destination refused: 10.0.0.1 is private",
            },
            Outcome("dead", error="destination refused: 10.0.0.1 is private"),
            id="refused destination: dead at once",
        ),
        pytest.param(
            {"status": None, "error_class": "timeout", "error": "no answer within 10 s"},
            Outcome("failed", NOW + 5, "no answer within 10 s"),
            id="timeout: failed",
        ),
        pytest.param(
            {"status": None, "error_class": "connect", "error": "cannot connect"},
            Outcome("failed", NOW + 5, "cannot connect"),
            id="connect: failed",
        ),
        pytest.param(
            {"status": None, "error_class": "timeout", "error": "no answer", "tries": 3},
            Outcome("dead", error="no answer (after 3 attempts)"),
            id="timeout at the end: dead",
        ),
    ],
)
def test_decide(kwargs: dict[str, Any], expected: Outcome) -> None:
    assert outcome(**kwargs) == expected


def test_a_failed_outcome_always_says_when() -> None:
    for status in (None, 300, 408, 429, 500, 502, 503, 504):
        result = outcome(status, error_class=None if status else "network", error="x")
        assert result.status == "failed" and result.due_at is not None
