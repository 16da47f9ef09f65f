"""Requests and events in PostgreSQL: the one statement that stores a request with its events and
their deliveries, the events each request mapped to (a resend points at the events it
repeated), and the test sends of `relayhook send-test`. Rows are relayhook.store.rows's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from relayhook.core.events import Event
from relayhook.core.records import Attempt, IngestResult, NewDelivery, Outcome, RequestRecord
from relayhook.store.postgres.deliveries import finish
from relayhook.store.rows import REQUEST_COLUMNS, Row, mapped_ids, to_request
from relayhook.store.text import dumps, dumps_data, to_column

NEW_EVENTS = """
new AS (
  INSERT INTO events (id, request_id, relay, type, source, subject, time, data)
  SELECT e.id, $1, e.relay, e.type, e.source, e.subject, e.time, e.data
  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
       WITH ORDINALITY AS e(id, relay, type, source, subject, time, data, n)
  {guard}
  ORDER BY e.n
  ON CONFLICT (id) DO NOTHING
  RETURNING id, relay
), routed AS (
  INSERT INTO deliveries (id, event_id, hook, relay, subject, status, due_at, created_at,
                          updated_at)
  SELECT d.id, d.event_id, d.hook, new.relay, d.subject, d.status, d.due_at, d.due_at, d.due_at
  FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::float8[])
       WITH ORDINALITY AS d(id, event_id, hook, subject, status, due_at, n)
  JOIN new ON new.id = d.event_id
  ORDER BY d.n
  ON CONFLICT (event_id, hook) DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM routed), {stored}
"""
# The request, its new events and their deliveries: one statement, one round trip per write.
# A request id met again writes nothing: the spool may hand one over twice after a crash.
INGEST = f"""
WITH request AS (
  INSERT INTO requests ({REQUEST_COLUMNS})
  VALUES ($1, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)
  ON CONFLICT (id) DO NOTHING
  RETURNING 1
), {
    NEW_EVENTS.format(
        guard="WHERE EXISTS (SELECT 1 FROM request)", stored="(SELECT count(*) FROM request)"
    )
}"""
ADD_EVENTS = f"WITH {NEW_EVENTS.format(guard='', stored='1')}"
SET_MAPPED = "UPDATE requests SET status = $1, error = $2, event_ids = $3 WHERE id = $4"


def ingest_params(
    request: RequestRecord, events: Sequence[Event], deliveries: Sequence[NewDelivery]
) -> tuple[Any, ...]:
    row = _request_values(request, events)
    return (row[0], *event_arrays(events), *delivery_arrays(deliveries), *row[1:])


def _request_values(request: RequestRecord, events: Sequence[Event]) -> Row:
    from relayhook.store.rows import request_row

    row = request_row(request, events)
    return (*row[:9], bool(row[9]), row[10], bool(row[11]))  # booleans, not SQLite's 0/1


def ingest_result(row: asyncpg.Record | None, given: int) -> IngestResult:
    assert row is not None  # the statement always returns one row of counts
    accepted, routed, stored = row
    if not stored:
        return IngestResult(accepted=0, duplicates=0, already_stored=True)
    return IngestResult(accepted, given - accepted, routed)


def event_arrays(events: Sequence[Event]) -> list[list[Any]]:
    """The columns of the events as arrays for `unnest` (relay, then as the events table)."""
    return [
        [to_column(e.id) for e in events],
        [e.relay for e in events],
        [to_column(e.type) for e in events],
        [to_column(e.source) for e in events],
        [to_column(e.subject) for e in events],
        [e.time for e in events],
        [dumps_data(e.data) for e in events],
    ]


def delivery_arrays(deliveries: Sequence[NewDelivery]) -> list[list[Any]]:
    return [
        [d.id for d in deliveries],
        [to_column(d.event_id) for d in deliveries],
        [d.hook for d in deliveries],
        [to_column(d.subject) for d in deliveries],
        [d.status for d in deliveries],
        [float(d.due_at) for d in deliveries],
    ]


async def remap(
    conn: asyncpg.Connection,
    request_id: str,
    events: Sequence[Event],
    status: str,
    error: str | None,
    params: tuple[Any, ...],
) -> IngestResult:
    ids = dumps([to_column(event.id) for event in events])
    if await conn.execute(SET_MAPPED, status, to_column(error), ids, request_id) == "UPDATE 0":
        raise KeyError(request_id)
    return ingest_result(await conn.fetchrow(ADD_EVENTS, *params), len(events))


async def with_event_ids(
    conn: asyncpg.Connection, query: str, params: Sequence[object]
) -> list[RequestRecord]:
    """Request records with the events each mapped to and which of those an earlier request
    had stored (two more queries for the whole page)."""
    page = [tuple(row) for row in await conn.fetch(query, *params)]
    mapped = sorted({i for row in page for i in mapped_ids(row) or ()})
    stored_by: dict[str, str] = {}
    if mapped:
        found = await conn.fetch("SELECT id, request_id FROM events WHERE id = ANY($1)", mapped)
        stored_by = {event_id: request_id for event_id, request_id in found}
    older = [row[0] for row in page if row[10] is None]
    first_seen: dict[str, list[str]] = {}
    if older:  # stored before event_ids were kept: their events are those they stored first
        found = await conn.fetch(
            "SELECT request_id, id FROM events WHERE request_id = ANY($1) ORDER BY seq", older
        )
        for request_id, event_id in found:
            first_seen.setdefault(request_id, []).append(event_id)
    records = []
    for row in page:
        ids = mapped_ids(row)
        if ids is None:
            records.append(to_request(row, first_seen.get(row[0], ())))
        else:
            repeated = [i for i in ids if stored_by.get(i, row[0]) != row[0]]
            records.append(to_request(row, ids, repeated))
    return records


INSERT_TEST_EVENT = (
    "INSERT INTO events (id, request_id, relay, type, source, subject, time,"
    " data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
INSERT_TEST_DELIVERY = (
    "INSERT INTO deliveries (id, event_id, hook, relay, subject, status, due_at, created_at,"
    " updated_at, lease_owner, test) VALUES ($1, $2, $3, $4, $5, 'claimed', $6, $6, $6, 'test',"
    " true)"
)


async def record_test(
    conn: asyncpg.Connection,
    request: RequestRecord,
    event: Event,
    delivery: NewDelivery,
    attempt: Attempt | None,
    outcome: Outcome,
    now: float,
) -> None:
    """A test send, whole: its request, its event, its delivery (claimed by the test, then
    finished as any delivery is) and its attempt."""
    row = _request_values(request, [event])
    await conn.execute(
        f"INSERT INTO requests ({REQUEST_COLUMNS}) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        *row,
    )
    arrays = event_arrays([event])
    await conn.execute(INSERT_TEST_EVENT, arrays[0][0], request.id, *(a[0] for a in arrays[1:]))
    await conn.execute(
        INSERT_TEST_DELIVERY,
        delivery.id,
        to_column(delivery.event_id),
        delivery.hook,
        event.relay,
        to_column(delivery.subject),
        delivery.due_at,
    )
    await finish(conn, delivery.id, owner="test", outcome=outcome, attempt=attempt, now=now)
