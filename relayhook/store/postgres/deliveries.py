"""Deliveries on PostgreSQL: claims, finishing, pausing, replay, shared pacing.

A claim is one transaction on a pooled connection: an advisory lock on the hook (so that the
count of its deliveries in flight, for `concurrency`, is the same for every process), then
`UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`. Claims and pacing
commit with `synchronous_commit = off`: one lost in a crash of the server leaves its deliveries
due again, which at-least-once delivery allows (the same webhook-id is sent again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from relayhook.core.pacing import book_sends
from relayhook.core.records import Attempt, Delivery, DeliveryStatus, Outcome
from relayhook.store.base import finished_at
from relayhook.store.postgres.schema import CLAIMABLE, UNFINISHED
from relayhook.store.rows import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    attempt_row,
    prefixed,
    to_delivery_with_event,
)
from relayhook.store.text import dumps, loads, to_column

if TYPE_CHECKING:
    from relayhook.core.hooks import RateLimitSpec

WITH_EVENT = f"{prefixed('d', DELIVERY_COLUMNS)}, {prefixed('e', EVENT_COLUMNS)}"
HOOK_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('relayhook hook ' || $1, 0))"
IN_FLIGHT = (
    "SELECT count(*) FROM deliveries WHERE hook = $1 AND status = 'claimed' AND lease_until > $2"
)
# Of those, the claimer's own whose request is over (`answered`): not in flight to the receiver.
ANSWERED = (
    "SELECT count(*) FROM deliveries WHERE id = ANY($1::text[]) AND status = 'claimed'"
    " AND lease_owner = $2 AND lease_until > $3"
)
NO_EARLIER_UNFINISHED = f"""
  AND NOT EXISTS (
    SELECT 1 FROM deliveries AS p
    WHERE p.hook = c.hook AND p.subject IS NOT DISTINCT FROM c.subject AND p.seq < c.seq
      AND p.status IN {UNFINISHED})"""
CLAIM = f"""
UPDATE deliveries AS d SET status = 'claimed', lease_until = $4, lease_owner = $5, updated_at = $2
FROM events AS e
WHERE d.seq IN (
    SELECT c.seq FROM deliveries AS c
    WHERE c.hook = $1 AND c.status IN {CLAIMABLE}
      AND (c.status = 'claimed' AND c.lease_until <= $2
           OR c.status <> 'claimed' AND c.due_at <= $2)
      AND NOT EXISTS (SELECT 1 FROM hook_states WHERE hook = $1 AND NOT active)
      {{ordered}}
    ORDER BY c.seq LIMIT $3 FOR UPDATE OF c SKIP LOCKED)
  AND e.id = d.event_id
RETURNING d.seq, {WITH_EVENT}
"""
CLAIM_ANY = CLAIM.format(ordered="")
CLAIM_ORDERED = CLAIM.format(ordered=NO_EARLIER_UNFINISHED)


async def claim_due(
    conn: asyncpg.Connection,
    *,
    hook: str,
    now: float,
    limit: int,
    lease_until: float,
    owner: str,
    ordered: bool,
    concurrency: int | None,
    answered: Sequence[str] = (),
) -> list[Delivery]:
    """Run inside a transaction (the advisory lock is held until it ends)."""
    if concurrency is not None:
        await conn.execute(HOOK_LOCK, hook)
        in_flight: int = await conn.fetchval(IN_FLIGHT, hook, now)
        if answered:
            in_flight -= await conn.fetchval(ANSWERED, answered, owner, now)
        limit = min(limit, concurrency - in_flight)
        if limit <= 0:
            return []
    rows = await conn.fetch(
        CLAIM_ORDERED if ordered else CLAIM_ANY, hook, now, limit, lease_until, owner
    )
    return [to_delivery_with_event(tuple(row)[1:]) for row in sorted(rows, key=lambda r: r[0])]


# -- pacing shared by every dispatcher

PACING_STATE = "SELECT state FROM hook_pacing WHERE hook = $1"
SAVE_PACING = """
INSERT INTO hook_pacing (hook, state, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (hook) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
"""


async def pacing_state(conn: asyncpg.Connection, hook: str) -> dict[str, Any]:
    text = await conn.fetchval(PACING_STATE, hook)
    state: dict[str, Any] = loads(text) if text is not None else {}
    return state


async def reserve_sends(
    conn: asyncpg.Connection, hook: str, rate_limit: RateLimitSpec | None, now: float, count: int
) -> list[float]:
    """Run inside a transaction: the hook's lock orders the read-modify-write of its state."""
    await conn.execute(HOOK_LOCK, hook)
    state, times = book_sends(rate_limit, await pacing_state(conn, hook), now, count)
    await conn.execute(SAVE_PACING, hook, dumps(state), now)
    return times


# -- finishing

FINISH = """
UPDATE deliveries SET status = $3, due_at = coalesce($4, due_at), last_status = $5,
    last_error = $6, lease_until = NULL, lease_owner = NULL, tries = tries + $7,
    attempts = attempts + $7, updated_at = $8
WHERE id = $1 AND status = 'claimed' AND lease_owner = $2
"""
INSERT_ATTEMPT = f"""
INSERT INTO attempts ({ATTEMPT_COLUMNS})
SELECT $1, coalesce(max(number), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9
FROM attempts WHERE delivery_id = $1
"""


async def finish(
    conn: asyncpg.Connection,
    delivery_id: str,
    *,
    owner: str,
    outcome: Outcome,
    attempt: Attempt | None,
    now: float,
) -> bool:
    """As SQLite's: the attempt is recorded even when the claim was lost, under the next free
    number. KeyError for an unknown delivery."""
    if await conn.fetchval("SELECT 1 FROM deliveries WHERE id = $1", delivery_id) is None:
        raise KeyError(delivery_id)
    if attempt is not None:
        row = attempt_row(attempt, 0)  # its number is the next free one, found in SQL
        await conn.execute(INSERT_ATTEMPT, row[0], *row[2:])
    tried = int(attempt is not None)
    status = await conn.execute(
        FINISH,
        delivery_id,
        owner,
        outcome.status,
        outcome.due_at,
        outcome.response_status,
        to_column(outcome.error),
        tried,
        finished_at(attempt, lambda: now),
    )
    if status == "UPDATE 1":
        return True
    if attempt is not None:
        await conn.execute(
            "UPDATE deliveries SET attempts = attempts + 1 WHERE id = $1", delivery_id
        )
    return False


# -- hooks on and off

SET_HOOK_STATE = """
INSERT INTO hook_states (hook, active, reason, at) VALUES ($1, $2, $3, $4)
ON CONFLICT (hook) DO UPDATE
    SET active = excluded.active, reason = excluded.reason, at = excluded.at
"""
PAUSE = (
    "UPDATE deliveries SET status = 'paused', updated_at = $1"
    " WHERE hook = $2 AND status IN ('pending', 'failed')"
)
RESUME = (
    "UPDATE deliveries SET status = 'pending', updated_at = $1"
    " WHERE hook = $2 AND status = 'paused'"
)


async def set_hook_active(
    conn: asyncpg.Connection, hook: str, active: bool, reason: str | None, at: float
) -> int:
    await conn.execute(SET_HOOK_STATE, hook, active, to_column(reason), at)
    changed = count_of(await conn.execute(RESUME if active else PAUSE, at, hook))
    await conn.execute("UPDATE config_version SET version = version + 1 WHERE id = 1")
    return changed


def count_of(status: str) -> int:
    """The row count of a command tag: 'UPDATE 3' -> 3."""
    return int(status.rsplit(" ", 1)[-1])


# -- replay

REPLAYED_STATUS = (
    "CASE WHEN hook IN (SELECT hook FROM hook_states WHERE NOT active)"
    " THEN 'paused' ELSE 'pending' END"
)
REPLAY = f"""
UPDATE deliveries SET status = {REPLAYED_STATUS}, tries = 0, due_at = $1,
    lease_until = NULL, lease_owner = NULL, updated_at = $1
WHERE seq IN (SELECT seq FROM deliveries WHERE {{where}} ORDER BY seq LIMIT $2)
"""
NOT_REPLAYED_YET = f"NOT (status = {REPLAYED_STATUS} AND tries = 0 AND due_at = $1)"


async def replay(
    conn: asyncpg.Connection,
    *,
    now: float,
    delivery_id: str | None,
    hook: str | None,
    statuses: Sequence[DeliveryStatus],
    since: float | None,
    limit: int,
) -> int:
    conditions = ["status <> 'claimed'"]
    params: list[object] = [now, limit]

    def param(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    if hook is not None:
        conditions.append(f"hook = {param(hook)}")
    if delivery_id is not None:
        conditions.append(f"id = {param(delivery_id)}")
    else:
        conditions.append("NOT test")  # a test send is replayed by its id only
        conditions.append(f"status = ANY({param(list(statuses))}::text[])")
        conditions.append(NOT_REPLAYED_YET)
        if since is not None:
            conditions.append(f"created_at >= {param(since)}")
    return count_of(await conn.execute(REPLAY.format(where=" AND ".join(conditions)), *params))
