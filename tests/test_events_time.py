"""format_time writes what strftime wrote, for every year and zone."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from relayhook.core.events import format_time


def by_strftime(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_format_time_matches_strftime() -> None:
    rng = random.Random(12)
    moments = [
        datetime(year, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
        for year in (1, 9, 99, 999, 1000, 1969, 1970, 2038, 9998)
    ]
    for _ in range(20_000):
        zone = timezone(timedelta(minutes=rng.randint(-14 * 60, 14 * 60)))
        moments.append(datetime.fromtimestamp(rng.uniform(-6e10, 2.5e11), zone))
    for moment in moments:
        assert format_time(moment) == by_strftime(moment), moment
