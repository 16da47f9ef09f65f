"""A week of traffic, compressed, with the clock passed in (issue 7, item 5: retention): the
SQLite file and its WAL stop growing once pruning keeps pace.

Every simulated hour, requests arrive with events routed to a hook; a dispatcher's worth of
claims and attempts finishes them; the background prune runs with `[retention] days = 1`. The
sizes of the database and its WAL are read at the end of each day. Pass rule: from day 3 on
(after the first day's data is prunable) the database grows less than 25% over its day-2 size
and the WAL stays under the 64 MiB journal_size_limit, and under the day-2 WAL size x 1.5.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relayhook.core.events import Event, format_time
from relayhook.retention import cutoffs_at
from relayhook.store import Attempt, NewDelivery, Outcome, RequestRecord, SQLiteStore
from relayhook.store.sqlite.ops import JOURNAL_SIZE_LIMIT

pytestmark = pytest.mark.slow

START = 1_700_000_000.0
HOUR = 3600.0
REQUESTS_PER_HOUR = 8
EVENTS_PER_REQUEST = 6
BODY = (
    b'{"rows": ['
    + b",".join(
        b'{"identifier": "user@example.com", "score": 75}' for _ in range(EVENTS_PER_REQUEST)
    )
    + b"]}"
)


async def simulate_week(path: Path) -> list[tuple[int, int]]:
    """(database bytes, WAL bytes) at the end of each of 7 days."""
    store = SQLiteStore(path, synchronous="NORMAL")
    await store.open()
    sizes: list[tuple[int, int]] = []
    try:
        for hour in range(7 * 24):
            now = START + hour * HOUR
            for n in range(REQUESTS_PER_HOUR):
                await ingest(store, f"h{hour}-r{n}", now + n)
            await deliver_all(store, now + 60)
            await store.prune(cutoffs_at(now + 120, days=1))
            if hour % 24 == 23:
                wal = path.with_name(path.name + "-wal")
                sizes.append((path.stat().st_size, wal.stat().st_size if wal.exists() else 0))
    finally:
        await store.close()
    return sizes


async def ingest(store: SQLiteStore, request_id: str, at: float) -> None:
    received = format_time(datetime.fromtimestamp(at, UTC))
    request = RequestRecord(
        request_id,
        "gmetri",
        received,
        "POST",
        "",
        (("content-type", "application/json"),),
        BODY,
        "accepted",
    )
    events = [
        Event(
            f"{request_id}-e{i}",
            "gmetri/o/d",
            "gmetri.variables.changed",
            "user@example.com",
            received,
            {"score": 75, "i": i},
            "gmetri",
        )
        for i in range(EVENTS_PER_REQUEST)
    ]
    deliveries = [
        NewDelivery(f"{e.id}.zapier", e.id, "zapier", e.subject, "pending", at) for e in events
    ]
    await store.ingest(request, events, deliveries)


async def deliver_all(store: SQLiteStore, now: float) -> None:
    claimed = await store.claim_due(
        hook="zapier", now=now, limit=10_000, lease_seconds=60, owner="w"
    )
    for delivery in claimed:
        attempt = Attempt(
            delivery.id,
            1,
            now,
            120.0,
            {"method": "POST", "url": "https://x/", "headers": [], "body": BODY.decode()},
            200,
            (),
            b"ok",
            None,
            None,
        )
        await store.finish(delivery.id, owner="w", outcome=Outcome("succeeded"), attempt=attempt)


def test_a_week_of_load_keeps_the_database_and_wal_bounded(tmp_path: Path) -> None:
    sizes = asyncio.run(simulate_week(tmp_path / "relayhook.db"))
    print("end of day (database, WAL) bytes:", sizes)  # the figure in RELIABILITY.md
    day2_db, day2_wal = sizes[1]
    for day, (db, wal) in enumerate(sizes[2:], start=3):
        assert db < day2_db * 1.25, f"day {day}: the database grew to {db} from {day2_db}"
        assert wal < JOURNAL_SIZE_LIMIT, f"day {day}: the WAL is {wal} bytes"
        assert wal <= max(day2_wal * 1.5, 4 * 1024 * 1024), f"day {day}: WAL {wal}"
    with contextlib.closing(sqlite3.connect(tmp_path / "relayhook.db")) as conn:
        kept = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        attempts = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    assert kept <= 25 * REQUESTS_PER_HOUR  # a day's worth (and an hour), of 7 days sent
    assert attempts <= 25 * REQUESTS_PER_HOUR * EVENTS_PER_REQUEST
