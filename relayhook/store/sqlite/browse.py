"""What the console and the API browse with, in SQLite: filtered history, activity counts over
time, and the console's own values (its password hash and session key).

Reads take a reader connection; `set_admin_value` is a job for the writer thread.
"""

from __future__ import annotations

import sqlite3

from relayhook.core.records import ActivityRow, Delivery, DeliveryFilter
from relayhook.store.rows import to_delivery_with_event
from relayhook.store.sqlite.deliveries import WITH_EVENT
from relayhook.store.sqlite.rows import Row
from relayhook.store.text import to_column

# Seconds since the epoch of a stored RFC 3339 time (`2024-05-01T12:00:00.123Z`).
EPOCH_OF_TEXT = "(julianday({column}) - 2440587.5) * 86400.0"


def like_pattern(text: str) -> str:
    """`%text%` for `LIKE ... ESCAPE '\\'`: the user's % and _ are plain characters."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def filter_clause(f: DeliveryFilter) -> tuple[str, list[object]]:
    """The WHERE of deliveries `d` joined with their events `e`, and its parameters."""
    conditions: list[str] = []
    params: list[object] = []
    for condition, value in (
        ("d.hook = ?", f.hook),
        ("d.last_status >= ?", f.min_code),
        ("d.last_status <= ?", f.max_code),
        ("d.created_at >= ?", f.since),
        ("d.created_at < ?", f.until),
        ("e.request_id = ?", f.request_id),
        ("d.event_id = ?", to_column(f.event_id)),
    ):
        if value is not None:
            conditions.append(condition)
            params.append(value)
    if f.statuses:
        conditions.append(f"d.status IN ({', '.join('?' for _ in f.statuses)})")
        params += list(f.statuses)
    if not f.tests:
        conditions.append("d.test = 0")
    if f.text:
        conditions.append(TEXT_CONDITION)
        params += [like_pattern(f.text)] * 3
    return ("WHERE " + " AND ".join(conditions)) if conditions else "", params


TEXT_CONDITION = (
    "(e.type LIKE ? ESCAPE '\\' OR coalesce(e.subject, '') LIKE ? ESCAPE '\\'"
    " OR e.data LIKE ? ESCAPE '\\')"
)


def find_deliveries(
    conn: sqlite3.Connection, f: DeliveryFilter, limit: int, before: str | None
) -> list[Delivery]:
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    clause, params = filter_clause(f)
    if before is not None:
        condition = "d.seq < (SELECT seq FROM deliveries WHERE id = ?)"
        clause = f"{clause} AND {condition}" if clause else f"WHERE {condition}"
        params.append(before)
    sql = f"{WITH_EVENT} {clause} ORDER BY d.seq DESC LIMIT ?"
    return [to_delivery_with_event(row) for row in conn.execute(sql, [*params, limit])]


def count_found_deliveries(conn: sqlite3.Connection, f: DeliveryFilter) -> int:
    clause, params = filter_clause(f)
    sql = f"SELECT count(*) FROM deliveries AS d JOIN events AS e ON e.id = d.event_id {clause}"
    count: int = conn.execute(sql, params).fetchone()[0]
    return count


def request_activity(
    conn: sqlite3.Connection, since_text: str, since: float, bucket_seconds: float
) -> list[ActivityRow]:
    epoch = EPOCH_OF_TEXT.format(column="received_at")
    sql = (
        f"SELECT relay, CAST(({epoch} - ?) / ? AS INTEGER) AS bucket, status, count(*)"
        " FROM requests WHERE received_at >= ? GROUP BY relay, bucket, status"
    )
    return _activity(conn.execute(sql, (since, bucket_seconds, since_text)))


def delivery_activity(
    conn: sqlite3.Connection, since: float, bucket_seconds: float
) -> list[ActivityRow]:
    sql = (
        "SELECT hook, CAST((created_at - ?) / ? AS INTEGER) AS bucket, status, count(*)"
        " FROM deliveries WHERE created_at >= ? GROUP BY hook, bucket, status"
    )
    return _activity(conn.execute(sql, (since, bucket_seconds, since)))


def _activity(rows: sqlite3.Cursor) -> list[ActivityRow]:
    return [
        (str(name), max(0, int(bucket)), str(status), int(count))
        for name, bucket, status, count in rows
    ]


def get_admin_value(conn: sqlite3.Connection, name: str) -> str | None:
    row: Row | None = conn.execute(
        "SELECT value FROM admin_values WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else str(row[0])


SET_ADMIN_VALUE = (
    "INSERT INTO admin_values (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
)


def set_admin_value(
    conn: sqlite3.Connection, name: str, value: str, at: float, replace: bool
) -> bool:
    action = (
        "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        if replace
        else "DO NOTHING"
    )
    written: int = conn.execute(SET_ADMIN_VALUE + action, (name, value, at)).rowcount
    return written == 1
