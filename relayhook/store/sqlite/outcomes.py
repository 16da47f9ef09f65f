"""Outcomes (request x hook: why it did or did not get deliveries) in SQLite: schema version 6,
the rows written with a request, and Run again (routing a stored request anew)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from relayhook.core.records import HookOutcome, NewDelivery
from relayhook.store.sqlite.deliveries import INSERT_DELIVERY
from relayhook.store.sqlite.rows import Row, dumps

# Version 7. One row per request x hook, deleted with its request (retention prunes both).
SCHEMA_7 = """
CREATE TABLE IF NOT EXISTS outcomes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL REFERENCES requests (id),
    hook        TEXT NOT NULL,
    kind        TEXT NOT NULL,  -- relayhook.core.records.OUTCOME_KINDS
    counts      TEXT NOT NULL,  -- JSON: events per kind
    detail      TEXT NOT NULL,  -- JSON: the first example per kind
    at          REAL NOT NULL,
    UNIQUE (request_id, hook)
);
-- A hook's recent outcomes, newest first ("the requests it skipped and why").
CREATE INDEX IF NOT EXISTS outcomes_hook ON outcomes (hook, seq);
"""

COLUMNS = "request_id, hook, kind, counts, detail, at"
UPSERT = f"""
INSERT INTO outcomes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (request_id, hook) DO UPDATE SET
    kind = excluded.kind, counts = excluded.counts, detail = excluded.detail, at = excluded.at
"""


def outcome_rows(outcomes: Sequence[HookOutcome]) -> list[Row]:
    return [
        (o.request_id, o.hook, o.kind, dumps(o.counts), dumps(o.detail), o.at) for o in outcomes
    ]


def insert(conn: sqlite3.Connection, rows: list[Row]) -> None:
    if rows:
        conn.executemany(UPSERT, rows)


def to_outcome(row: Row) -> HookOutcome:
    request_id, hook, kind, counts, detail, at = row
    return HookOutcome(request_id, hook, kind, json.loads(counts), json.loads(detail), at)


def of_request(conn: sqlite3.Connection, request_id: str) -> list[HookOutcome]:
    sql = f"SELECT {COLUMNS} FROM outcomes WHERE request_id = ? ORDER BY hook"
    return [to_outcome(row) for row in conn.execute(sql, (request_id,))]


def of_hook(
    conn: sqlite3.Connection,
    hook: str,
    kinds: Sequence[str] | None,
    exclude: Sequence[str],
    limit: int,
) -> list[HookOutcome]:
    sql = f"SELECT {COLUMNS} FROM outcomes WHERE hook = ?"
    params: list[object] = [hook]
    if kinds:
        sql += " AND kind IN (SELECT value FROM json_each(?))"
        params.append(dumps(list(kinds)))
    if exclude:
        sql += " AND kind NOT IN (SELECT value FROM json_each(?))"
        params.append(dumps(list(exclude)))
    sql += " ORDER BY seq DESC LIMIT ?"
    return [to_outcome(row) for row in conn.execute(sql, [*params, limit])]


REQUEUE_SKIPPED = """
UPDATE deliveries SET status = ?, tries = 0, due_at = ?, last_error = NULL, updated_at = ?
WHERE event_id = ? AND hook = ? AND status = 'skipped'
"""


def rerun(
    conn: sqlite3.Connection,
    request_id: str,
    deliveries: Sequence[NewDelivery],
    rows: list[Row],
    now: float,
) -> tuple[int, int]:
    """Add the deliveries that do not exist yet (one per event x hook: the unique key keeps
    out a second), make due again those the dispatcher had skipped, and replace the request's
    outcomes. (created, requeued)."""
    relays = dict(
        conn.execute("SELECT id, relay FROM events WHERE request_id = ?", (request_id,)).fetchall()
    )
    created = requeued = 0
    for d in deliveries:
        if d.event_id not in relays:
            raise ValueError(f"delivery {d.id!r} is for event {d.event_id!r}, not of {request_id}")
        inserted = conn.execute(
            INSERT_DELIVERY,
            (d.id, d.event_id, d.hook, relays[d.event_id], d.subject, d.status, now, now, now),
        ).rowcount
        if inserted:
            created += 1
        else:
            requeued += conn.execute(
                REQUEUE_SKIPPED, (d.status, now, now, d.event_id, d.hook)
            ).rowcount
    conn.execute("DELETE FROM outcomes WHERE request_id = ?", (request_id,))
    insert(conn, rows)
    return created, requeued
