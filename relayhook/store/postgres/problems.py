"""Problems on PostgreSQL: the same contract as relayhook.store.sqlite.problems
(its tables: migration 5 in relayhook.store.postgres.schema)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from relayhook.core.problems import failure_error, failure_signature
from relayhook.core.records import Attempt, Outcome, Problem, ProblemStatus
from relayhook.store.postgres.deliveries import REPLAY, count_of
from relayhook.store.rows import to_problem
from relayhook.store.text import to_column

COLUMNS = (
    "id, hook, signature, status, first_at, last_at, deliveries, error, acknowledged_at,"
    " resolved_at, notified, relay, request"
)
OPEN = """
INSERT INTO problems (id, hook, signature, status, first_at, last_at, error)
SELECT $1, d.hook, $2, 'open', $3, $3, $4 FROM deliveries AS d WHERE d.id = $5
ON CONFLICT (hook, relay, signature) WHERE status <> 'resolved'
DO UPDATE SET last_at = excluded.last_at, error = excluded.error
RETURNING id
"""
OPEN_RELAY = """
INSERT INTO problems (id, hook, relay, signature, status, first_at, last_at, error, request)
VALUES ($1, '', $2, $3, 'open', $4, $4, $5, $6)
ON CONFLICT (hook, relay, signature) WHERE status <> 'resolved'
DO UPDATE SET last_at = excluded.last_at, error = excluded.error
RETURNING first_at = last_at
"""
# A success also starts the hook's dead deliveries in a row again (streaks): one round trip.
RESOLVE = """
WITH reset AS (
    DELETE FROM hook_streaks WHERE hook = (SELECT hook FROM deliveries WHERE id = $2)
)
UPDATE problems SET status = 'resolved', resolved_at = $1
WHERE hook = (SELECT hook FROM deliveries WHERE id = $2) AND status <> 'resolved'
"""
ADD_DELIVERY = """
WITH added AS (
    INSERT INTO problem_deliveries VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING problem_id
)
UPDATE problems SET deliveries = deliveries + 1 WHERE id IN (SELECT problem_id FROM added)
"""


async def note(
    conn: asyncpg.Connection,
    delivery_id: str,
    outcome: Outcome,
    attempt: Attempt | None,
    now: float,
) -> None:
    """As SQLite's: a success resolves the hook's problems; a failure joins or opens one."""
    if outcome.status == "succeeded":
        await conn.execute(RESOLVE, now, delivery_id)
        return
    signature = failure_signature(outcome, attempt)
    if signature is None:
        return
    await open_problem(conn, delivery_id, signature, failure_error(outcome, attempt), now)


async def open_problem(
    conn: asyncpg.Connection, delivery_id: str, signature: str, error: str | None, now: float
) -> None:
    """Open the problem of `signature` of the delivery's hook (or join its unresolved one)."""
    problem_id = await conn.fetchval(
        OPEN, f"prb_{uuid.uuid4().hex[:20]}", signature, now, to_column(error), delivery_id
    )
    await conn.execute(ADD_DELIVERY, problem_id, delivery_id)


async def open_relay_problem(
    conn: asyncpg.Connection, relay: str, signature: str, text: str, request: str | None, now: float
) -> bool:
    """As SQLite's: open the relay's problem of `signature`, or update its text."""
    opened: bool = await conn.fetchval(
        OPEN_RELAY, f"prb_{uuid.uuid4().hex[:20]}", relay, signature, now, to_column(text), request
    )
    return opened


async def resolve_relay_problem(
    conn: asyncpg.Connection, relay: str, signature: str, now: float
) -> bool:
    sql = (
        "UPDATE problems SET status = 'resolved', resolved_at = $1"
        " WHERE hook = '' AND relay = $2 AND signature = $3 AND status <> 'resolved'"
    )
    return count_of(await conn.execute(sql, now, relay, signature)) > 0


async def list_problems(
    conn: asyncpg.Connection,
    hook: str | None,
    statuses: Sequence[ProblemStatus],
    limit: int,
    relay: str | None = None,
) -> list[Problem]:
    sql = f"SELECT {COLUMNS} FROM problems WHERE status = ANY($1::text[])"
    params: list[object] = [list(statuses)]
    if hook is not None:
        params.append(hook)
        sql += f" AND hook = ${len(params)}"
    if relay is not None:
        params.append(relay)
        sql += f" AND relay = ${len(params)}"
    params.append(limit)
    sql += f" ORDER BY seq DESC LIMIT ${len(params)}"
    return [to_problem(tuple(row)) for row in await conn.fetch(sql, *params)]


async def get_problem(conn: asyncpg.Connection, problem_id: str) -> Problem | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM problems WHERE id = $1", problem_id)
    return None if row is None else to_problem(tuple(row))


async def acknowledge(conn: asyncpg.Connection, problem_id: str, at: float) -> bool:
    sql = (
        "UPDATE problems SET status = 'acknowledged', acknowledged_at = $1"
        " WHERE id = $2 AND status = 'open'"
    )
    return count_of(await conn.execute(sql, at, problem_id)) == 1


async def replay(conn: asyncpg.Connection, problem_id: str, now: float, limit: int) -> int:
    where = (
        "status IN ('failed', 'dead', 'paused') AND id IN"
        " (SELECT delivery_id FROM problem_deliveries WHERE problem_id = $3)"
    )
    return count_of(await conn.execute(REPLAY.format(where=where), now, limit, problem_id))


async def mark_notified(conn: asyncpg.Connection, problem_id: str) -> bool:
    sql = "UPDATE problems SET notified = true WHERE id = $1 AND NOT notified"
    return count_of(await conn.execute(sql, problem_id)) == 1


async def get_shapes(conn: asyncpg.Connection, relay: str) -> dict[str, str]:
    rows = await conn.fetch("SELECT type, shape FROM payload_shapes WHERE relay = $1", relay)
    return {str(row[0]): str(row[1]) for row in rows}


async def save_shape(
    conn: asyncpg.Connection, relay: str, type_: str, shape: str, at: float
) -> None:
    await conn.execute(
        "INSERT INTO payload_shapes VALUES ($1, $2, $3, $4) ON CONFLICT (relay,"
        " type) DO UPDATE SET shape = excluded.shape,"
        " updated_at = excluded.updated_at",
        relay,
        type_,
        shape,
        at,
    )
