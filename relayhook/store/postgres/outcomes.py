"""Outcomes on PostgreSQL: why each hook did or did not fire, one row per request x hook.

The same contract as relayhook.store.sqlite.outcomes; JSON columns go through
relayhook.store.text so that text PostgreSQL cannot hold (NUL, lone surrogates) round-trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from relayhook.core.records import HookOutcome, NewDelivery
from relayhook.store.text import dumps, loads, to_column

# Migration 4. Deleted with its request (retention prunes both).
SCHEMA = """
CREATE TABLE outcomes (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  text NOT NULL REFERENCES requests (id),
    hook        text NOT NULL,
    kind        text NOT NULL,
    counts      text NOT NULL,
    detail      text NOT NULL,
    at          double precision NOT NULL,
    UNIQUE (request_id, hook)
);
CREATE INDEX outcomes_hook ON outcomes (hook, seq);
"""

COLUMNS = "request_id, hook, kind, counts, detail, at"
UPSERT = f"""
INSERT INTO outcomes ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (request_id, hook) DO UPDATE SET
    kind = excluded.kind, counts = excluded.counts, detail = excluded.detail, at = excluded.at
"""
INSERT_DELIVERY = """
INSERT INTO deliveries (id, event_id, hook, relay, subject, status, due_at, created_at,
                        updated_at)
SELECT $1, e.id, $3, e.relay, $4, $5, $6, $6, $6 FROM events AS e
WHERE e.id = $2 AND e.request_id = $7
ON CONFLICT (event_id, hook) DO NOTHING
"""
REQUEUE_SKIPPED = """
UPDATE deliveries SET status = $1, tries = 0, due_at = $2, last_error = NULL, updated_at = $2
WHERE event_id = $3 AND hook = $4 AND status = 'skipped'
"""
Row = tuple[Any, ...]


def outcome_rows(outcomes: Sequence[HookOutcome]) -> list[Row]:
    return [
        (o.request_id, o.hook, o.kind, dumps(o.counts), dumps(o.detail), o.at) for o in outcomes
    ]


async def insert(conn: asyncpg.Connection, rows: list[Row]) -> None:
    if rows:
        await conn.executemany(UPSERT, rows)


def to_outcome(row: asyncpg.Record) -> HookOutcome:
    request_id, hook, kind, counts, detail, at = row
    return HookOutcome(request_id, hook, kind, loads(counts), loads(detail), at)


async def of_request(conn: asyncpg.Connection, request_id: str) -> list[HookOutcome]:
    rows = await conn.fetch(
        f'SELECT {COLUMNS} FROM outcomes WHERE request_id = $1 ORDER BY hook COLLATE "C"',
        request_id,
    )
    return [to_outcome(row) for row in rows]


async def of_hook(
    conn: asyncpg.Connection,
    hook: str,
    kinds: Sequence[str] | None,
    exclude: Sequence[str],
    limit: int,
) -> list[HookOutcome]:
    sql = f"SELECT {COLUMNS} FROM outcomes WHERE hook = $1"
    params: list[object] = [hook]
    if kinds:
        params.append(list(kinds))
        sql += f" AND kind = ANY(${len(params)})"
    if exclude:
        params.append(list(exclude))
        sql += f" AND NOT kind = ANY(${len(params)})"
    params.append(limit)
    sql += f" ORDER BY seq DESC LIMIT ${len(params)}"
    return [to_outcome(row) for row in await conn.fetch(sql, *params)]


async def rerun(
    conn: asyncpg.Connection,
    request_id: str,
    deliveries: Sequence[NewDelivery],
    rows: list[Row],
    now: float,
) -> tuple[int, int]:
    """Add the deliveries that do not exist yet (the unique key keeps out a second), make due
    again those the dispatcher had skipped, replace the request's outcomes: (created,
    requeued). ValueError for a delivery whose event is not of this request."""
    created = requeued = 0
    for d in deliveries:
        event_id = to_column(d.event_id)
        known = await conn.fetchval(
            "SELECT 1 FROM events WHERE id = $1 AND request_id = $2", event_id, request_id
        )
        if known is None:
            raise ValueError(f"delivery {d.id!r} is for event {d.event_id!r}, not of {request_id}")
        done = await conn.execute(
            INSERT_DELIVERY, d.id, event_id, d.hook, to_column(d.subject), d.status, now, request_id
        )
        if done.endswith(" 1"):
            created += 1
        else:
            done = await conn.execute(REQUEUE_SKIPPED, d.status, now, event_id, d.hook)
            requeued += int(done.rsplit(" ", 1)[1])
    await conn.execute("DELETE FROM outcomes WHERE request_id = $1", request_id)
    await insert(conn, rows)
    return created, requeued
