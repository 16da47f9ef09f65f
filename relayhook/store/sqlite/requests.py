"""Requests in SQLite: the events each mapped to (a resend points at the events it repeated),
and the test sends of `relayhook send-test`. Rows and records are relayhook.store.rows's.

Schema version 4 adds `requests.event_ids` (JSON: the ids of every event the request mapped to,
new or repeated; NULL for requests stored before it, whose events are found by `request_id`)
and the `test` flags of requests and deliveries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from relayhook.core.events import Event
from relayhook.core.records import Attempt, NewDelivery, Outcome, RequestRecord
from relayhook.store.rows import REQUEST_COLUMNS, Row, mapped_ids, to_request
from relayhook.store.sqlite.deliveries import finish
from relayhook.store.text import dumps, to_column

SCHEMA_4 = """
ALTER TABLE requests ADD COLUMN event_ids TEXT;  -- JSON list of the ids it mapped to
ALTER TABLE requests ADD COLUMN test INTEGER NOT NULL DEFAULT 0;  -- 1: made by send-test
ALTER TABLE deliveries ADD COLUMN test INTEGER NOT NULL DEFAULT 0;  -- 1: made by send-test
"""

# A request id met again writes nothing: the spool may hand one over twice after a crash.
INSERT_REQUEST = (
    f"INSERT INTO requests ({REQUEST_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)


def set_mapped(
    conn: sqlite3.Connection,
    request_id: str,
    status: str,
    error: str | None,
    events: Sequence[Event],
) -> None:
    """A remapped request's new status, error and the events it mapped to; KeyError if none."""
    update = "UPDATE requests SET status = ?, error = ?, event_ids = ? WHERE id = ?"
    ids = dumps([to_column(event.id) for event in events])
    if conn.execute(update, (status, to_column(error), ids, request_id)).rowcount == 0:
        raise KeyError(request_id)


def with_event_ids(conn: sqlite3.Connection, rows: Iterable[Row]) -> list[RequestRecord]:
    """Request records for `rows`, with the events each mapped to and which of those an earlier
    request had stored (two queries for the whole page)."""
    page = list(rows)
    # One JSON array parameter rather than one `?` per id: no limit on the page size.
    mapped = {i for row in page for i in mapped_ids(row) or ()}
    stored_by: dict[str, str] = {}
    if mapped:
        sql = "SELECT id, request_id FROM events WHERE id IN (SELECT value FROM json_each(?))"
        stored_by = dict(conn.execute(sql, (dumps(sorted(mapped)),)).fetchall())
    older = [row[0] for row in page if row[10] is None]
    first_seen: dict[str, list[str]] = {}
    if older:  # stored before version 4: their events are those they stored first
        sql = (
            "SELECT request_id, id FROM events"
            " WHERE request_id IN (SELECT value FROM json_each(?)) ORDER BY seq"
        )
        for request_id, event_id in conn.execute(sql, (dumps(older),)):
            first_seen.setdefault(request_id, []).append(event_id)
    return [_record(row, stored_by, first_seen) for row in page]


def _record(row: Row, stored_by: dict[str, str], first_seen: dict[str, list[str]]) -> RequestRecord:
    ids = mapped_ids(row)
    if ids is None:
        return to_request(row, first_seen.get(row[0], ()))
    return to_request(row, ids, [i for i in ids if stored_by.get(i, row[0]) != row[0]])


def record_test(
    conn: sqlite3.Connection,
    request_row: Row,
    event_row: Row,
    delivery: NewDelivery,
    relay: str,
    attempt: Attempt | None,
    outcome: Outcome,
) -> None:
    """A test send, whole: its request, its event, its delivery (claimed by the test, then
    finished as any delivery is) and its attempt. A job for the writer thread."""
    conn.execute(INSERT_REQUEST, request_row)
    conn.execute(
        "INSERT INTO events (id, request_id, relay, type, source, subject, time, data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        event_row,
    )
    conn.execute(
        "INSERT INTO deliveries (id, event_id, hook, relay, subject, status, due_at, created_at,"
        " updated_at, lease_owner, test) VALUES (?, ?, ?, ?, ?, 'claimed', ?, ?, ?, 'test', 1)",
        (
            delivery.id,
            to_column(delivery.event_id),
            delivery.hook,
            relay,
            to_column(delivery.subject),
            delivery.due_at,
            delivery.due_at,
            delivery.due_at,
        ),
    )
    finish(conn, delivery.id, owner="test", outcome=outcome, attempt=attempt)
