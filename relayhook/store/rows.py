"""Rows and records, the same for every engine: what a stored row holds, and the record a read
gives back. Rows are built in the caller (not in a writer), with text as relayhook.store.text
stores it; a read row is any sequence of the columns named here, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relayhook.core.events import Event
from relayhook.core.records import Attempt, Delivery, Problem, RequestRecord
from relayhook.store.text import dumps_data, from_column, loads, to_column

Row = tuple[Any, ...]

# `event_ids`: JSON list of the (stored forms of the) ids of every event the request mapped to,
# new or repeated; NULL for requests stored before SQLite's version 4. `test`: made by send-test.
REQUEST_COLUMNS = (
    "id, relay, received_at, method, query, headers, body, status, error,"
    " truncated, event_ids, test"
)
EVENT_COLUMNS = "id, source, type, subject, time, data, relay, request_id"
DELIVERY_COLUMNS = (
    "id, event_id, hook, relay, subject, status, tries, attempts, due_at, lease_until,"
    " last_status, last_error, created_at, updated_at, test"
)
DELIVERY_WIDTH = len(DELIVERY_COLUMNS.split(","))
ATTEMPT_COLUMNS = (
    "delivery_id, number, started_at, duration_ms, request, response_status,"
    " response_headers, response_body, error_class, error"
)


def prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


def request_row(request: RequestRecord, events: Sequence[Event]) -> Row:
    return (
        request.id,
        request.relay,
        request.received_at,
        request.method,
        to_column(request.query),
        dumps_data([[name, value] for name, value in request.headers]),
        bytes(request.body),
        request.status,
        to_column(request.error),
        int(request.truncated),
        dumps_data([to_column(event.id) for event in events]),
        int(request.test),
    )


def event_rows(events: Sequence[Event], request_id: str) -> list[Row]:
    # The request being stored is the one that produced them, whatever `request_id` they carry.
    return [
        (
            to_column(e.id),
            request_id,
            e.relay,
            to_column(e.type),
            to_column(e.source),
            to_column(e.subject),
            e.time,
            dumps_data(e.data),
        )
        for e in events
    ]


def mapped_ids(row: Row) -> list[str] | None:
    """The stored ids of the events a request row mapped to (None: stored before they were
    kept; its events are those whose `request_id` it is)."""
    return None if row[10] is None else list(dict.fromkeys(loads(row[10])))


def to_request(
    row: Row, event_ids: Sequence[str], duplicate_ids: Sequence[str] = ()
) -> RequestRecord:
    """The record of a row of REQUEST_COLUMNS; ids in their stored form."""
    id_, relay, received_at, method, query, headers, body, status, error, truncated = row[:10]
    return RequestRecord(
        id=id_,
        relay=relay,
        received_at=received_at,
        method=method,
        query=from_column(query),
        headers=tuple((name, value) for name, value in loads(headers)),
        body=bytes(body),
        status=status,
        error=from_column(error),
        truncated=bool(truncated),
        event_ids=tuple(from_column(i) for i in event_ids),
        duplicate_ids=tuple(from_column(i) for i in duplicate_ids),
        test=bool(row[11]),
    )


def to_event(row: Row) -> Event:
    """The Event of a row of EVENT_COLUMNS."""
    id_, source, type_, subject, time, data, relay, request_id = row
    return Event(
        id=from_column(id_),
        source=from_column(source),
        type=from_column(type_),
        subject=from_column(subject),
        time=time,
        data=loads(data),
        relay=relay,
        request_id=request_id,
    )


def to_delivery(row: Row, event: Event | None = None) -> Delivery:
    (id_, event_id, hook, relay, subject, status, tries, attempts, due_at, lease_until,
     last_status, last_error, created_at, updated_at, test) = row  # fmt: skip
    return Delivery(
        id=id_,
        event_id=from_column(event_id),
        hook=hook,
        relay=relay,
        subject=from_column(subject),
        status=status,
        tries=tries,
        attempts=attempts,
        due_at=due_at,
        lease_until=lease_until,
        last_status=last_status,
        last_error=from_column(last_error),
        created_at=created_at,
        updated_at=updated_at,
        event=event,
        test=bool(test),
    )


def to_delivery_with_event(row: Row) -> Delivery:
    return to_delivery(row[:DELIVERY_WIDTH], to_event(row[DELIVERY_WIDTH:]))


def to_attempt(row: Row) -> Attempt:
    (delivery_id, number, started_at, duration_ms, request, response_status, response_headers,
     response_body, error_class, error) = row  # fmt: skip
    return Attempt(
        delivery_id=delivery_id,
        number=number,
        started_at=started_at,
        duration_ms=duration_ms,
        request=loads(request),
        response_status=response_status,
        response_headers=tuple((name, value) for name, value in loads(response_headers)),
        response_body=bytes(response_body),
        error_class=error_class,
        error=from_column(error),
    )


def attempt_row(attempt: Attempt, number: int) -> Row:
    return (
        attempt.delivery_id,
        number,
        attempt.started_at,
        attempt.duration_ms,
        dumps_data(attempt.request),  # text only: method, url, headers, body (or its base64)
        attempt.response_status,
        dumps_data([[name, value] for name, value in attempt.response_headers]),
        bytes(attempt.response_body),
        attempt.error_class,
        to_column(attempt.error),
    )


def to_problem(row: Row) -> Problem:
    """A problem from its columns, in the order both engines select them: id, hook,
    signature, status, first_at, last_at, deliveries, error, acknowledged_at, resolved_at,
    notified, relay, request."""
    (id_, hook, signature, status, first_at, last_at, deliveries, error, acknowledged_at,
     resolved_at, notified, relay, request) = row  # fmt: skip
    return Problem(
        id_,
        hook,
        signature,
        status,
        first_at,
        last_at,
        deliveries,
        from_column(error),
        acknowledged_at,
        resolved_at,
        bool(notified),  # SQLite keeps 0/1
        relay,
        request,
    )
