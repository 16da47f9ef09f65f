"""What the console and the API browse with, in PostgreSQL: filtered history, activity counts
over time, the console's own values; and the operator's: prune and the backlog. The same
answers as SQLite's (relayhook.store.sqlite.browse and ops) for the same rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import asyncpg

from relayhook.core.records import FINAL_STATUSES, ActivityRow, Delivery, DeliveryFilter
from relayhook.store.base import BacklogEntry, Cutoffs, PruneResult
from relayhook.store.postgres.deliveries import WITH_EVENT, count_of
from relayhook.store.rows import to_delivery_with_event
from relayhook.store.text import dumps, to_column

Run = Callable[[Callable[[asyncpg.Connection], Awaitable[Any]]], Awaitable[Any]]
FROM_JOINED = "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id"


def like_pattern(text: str) -> str:
    """`%text%` for `LIKE ... ESCAPE '\\'`: the user's % and _ are plain characters."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def body_pattern(text: str) -> str:
    """A `LIKE` pattern for `lower(encode(body, 'escape'))`: the bytes of `text` as that
    encoding writes them (backslash doubled; NUL and non-ASCII bytes as \\ooo), so a body that
    is not UTF-8 is searched too, ASCII letters in any case, as SQLite does."""
    escaped = "".join(
        "\\\\" if b == 0x5C else f"\\{b:03o}" if b == 0 or b >= 0x80 else chr(b)
        for b in _ascii_lower(text).encode()
    )
    return like_pattern(escaped)


def filter_clause(f: DeliveryFilter, params: list[object]) -> str:
    """The WHERE of deliveries `d` joined with their events `e`; appends its parameters."""

    def param(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    conditions = [
        f"{column} {param(value)}"
        for column, value in (
            ("d.hook =", f.hook),
            ("d.last_status >=", f.min_code),
            ("d.last_status <=", f.max_code),
            ("d.created_at >=", f.since),
            ("d.created_at <", f.until),
            ("e.request_id =", f.request_id),
            ("d.event_id =", to_column(f.event_id)),
        )
        if value is not None
    ]
    if f.statuses:
        conditions.append(f"d.status = ANY({param(list(f.statuses))}::text[])")
    if not f.tests:
        conditions.append("NOT d.test")
    if f.text:
        like = param(like_pattern(f.text))
        # ILIKE: SQLite's LIKE ignores the case of ASCII letters.
        conditions.append(
            f"(e.type ILIKE {like} ESCAPE '\\' OR coalesce(e.subject, '') ILIKE"
            f" {like} ESCAPE '\\' OR e.data ILIKE {like} ESCAPE '\\')"
        )
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


async def find_deliveries(
    conn: asyncpg.Connection, f: DeliveryFilter, limit: int, before: str | None
) -> list[Delivery]:
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    params: list[object] = []
    clause = filter_clause(f, params)
    if before is not None:
        params.append(before)
        seek = f"d.seq < (SELECT seq FROM deliveries WHERE id = ${len(params)})"
        clause = f"{clause} AND {seek}" if clause else f"WHERE {seek}"
    params.append(limit)
    rows = await conn.fetch(
        f"SELECT {WITH_EVENT} {FROM_JOINED} {clause} ORDER BY d.seq DESC LIMIT ${len(params)}",
        *params,
    )
    return [to_delivery_with_event(tuple(row)) for row in rows]


async def count_found_deliveries(conn: asyncpg.Connection, f: DeliveryFilter) -> int:
    params: list[object] = []
    clause = filter_clause(f, params)
    return int(await conn.fetchval(f"SELECT count(*) {FROM_JOINED} {clause}", *params))


REQUEST_ACTIVITY = """
SELECT relay, floor((extract(epoch FROM received_at::timestamptz) - $1) / $2)::bigint AS bucket,
       status, count(*)
FROM requests WHERE received_at >= $3 GROUP BY relay, bucket, status
"""
DELIVERY_ACTIVITY = """
SELECT hook, floor((created_at - $1) / $2)::bigint AS bucket, status, count(*)
FROM deliveries WHERE created_at >= $1 GROUP BY hook, bucket, status
"""


async def request_activity(
    conn: asyncpg.Connection, since_text: str, since: float, bucket_seconds: float
) -> list[ActivityRow]:
    return _activity(await conn.fetch(REQUEST_ACTIVITY, since, bucket_seconds, since_text))


async def delivery_activity(
    conn: asyncpg.Connection, since: float, bucket_seconds: float
) -> list[ActivityRow]:
    return _activity(await conn.fetch(DELIVERY_ACTIVITY, since, bucket_seconds))


def _activity(rows: list[asyncpg.Record]) -> list[ActivityRow]:
    return [
        (str(name), max(0, int(bucket)), str(status), int(count))
        for name, bucket, status, count in rows
    ]


async def get_admin_value(conn: asyncpg.Connection, name: str) -> str | None:
    value = await conn.fetchval("SELECT value FROM admin_values WHERE name = $1", name)
    return None if value is None else str(value)


async def set_admin_value(
    conn: asyncpg.Connection, name: str, value: str, at: float, replace: bool
) -> bool:
    action = (
        "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        if replace
        else "DO NOTHING"
    )
    tag = await conn.execute(
        "INSERT INTO admin_values (name, value, updated_at)"
        f" VALUES ($1, $2, $3) ON CONFLICT (name) {action}",
        name,
        value,
        at,
    )
    return count_of(tag) == 1


# -- operations

FINAL = "(" + ", ".join(f"'{status}'" for status in FINAL_STATUSES) + ")"
PRUNE_DELIVERIES = f"""
WITH chosen AS (
  SELECT id FROM deliveries
  WHERE status IN {FINAL} AND updated_at < coalesce(($1::jsonb ->> hook)::float8, $2)
  ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED
), gone_attempts AS (
  DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM chosen) RETURNING 1
), gone AS (
  DELETE FROM deliveries WHERE id IN (SELECT id FROM chosen) RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_attempts)
"""
PRUNE_REQUESTS = """
WITH chosen AS (
  SELECT id FROM requests AS r
  WHERE received_at < coalesce($1::jsonb ->> relay, $2)
    AND NOT EXISTS (SELECT 1 FROM events AS e JOIN deliveries AS d ON d.event_id = e.id
                    WHERE e.request_id = r.id)
  ORDER BY received_at LIMIT $3 FOR UPDATE SKIP LOCKED
), gone_events AS (
  DELETE FROM events WHERE request_id IN (SELECT id FROM chosen) RETURNING 1
), gone_outcomes AS (
  DELETE FROM outcomes WHERE request_id IN (SELECT id FROM chosen) RETURNING 1
), gone AS (
  DELETE FROM requests WHERE id IN (SELECT id FROM chosen) RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_events)
"""
NEVER = -1.0e308  # a cutoff nothing is older than


async def prune(
    write: Run, cutoffs: Cutoffs, batch: int, text_time: Callable[[float | None], str]
) -> PruneResult:
    """Finished deliveries, then requests with no delivery left, `batch` at a time, each batch
    a transaction of its own; until a batch comes back short (each one deletes what it chose,
    so the loop ends)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    hooks = dumps({k: NEVER if v is None else v for k, v in cutoffs.hooks.items()})
    relays = dumps({k: text_time(v) for k, v in cutoffs.relays.items()})
    default = NEVER if cutoffs.default is None else cutoffs.default
    total = PruneResult()
    for sql, params in (
        (PRUNE_DELIVERIES, (hooks, default)),
        (PRUNE_REQUESTS, (relays, text_time(cutoffs.default))),
    ):
        while True:  # bounded: every round deletes what it counts, from a finite table
            row = await write(partial(_fetch_row, sql=sql, params=(*params, batch)))
            rows, dependents = int(row[0]), int(row[1])
            total += (
                PruneResult(deliveries=rows, attempts=dependents)
                if sql is PRUNE_DELIVERIES
                else PruneResult(requests=rows, events=dependents)
            )
            if rows < batch:
                break
    return total


async def _fetch_row(
    conn: asyncpg.Connection, *, sql: str, params: tuple[Any, ...]
) -> asyncpg.Record | None:
    return await conn.fetchrow(sql, *params)


BACKLOG = """
SELECT hook, status, count(*), min(created_at) FILTER (WHERE status IN ('pending', 'failed',
       'claimed'))
FROM deliveries WHERE status IN ('pending', 'failed', 'claimed', 'paused', 'dead')
GROUP BY hook, status
"""


async def backlog(conn: asyncpg.Connection) -> list[BacklogEntry]:
    return [
        BacklogEntry(hook, status, int(count), oldest)
        for hook, status, count, oldest in await conn.fetch(BACKLOG)
    ]


def _ascii_lower(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)
