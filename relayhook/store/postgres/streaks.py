"""A hook's dead deliveries in a row on PostgreSQL: the same contract as
relayhook.store.sqlite.streaks (its table: migration 7 in relayhook.store.postgres.schema; a
success starts the count again in problems.RESOLVE, one statement with the problems it
resolves)."""

from __future__ import annotations

import asyncpg

from relayhook.core.problems import (
    alert_kind,
    deactivation_reason,
    failure_error,
    failure_signature,
    streak_signature,
)
from relayhook.core.records import Attempt, Outcome
from relayhook.store.postgres import deliveries as deliveries_sql
from relayhook.store.postgres.problems import open_problem

# Concurrent finishes of one hook's deliveries queue on its row: each gets its own count.
COUNT_DEAD = """
INSERT INTO hook_streaks (hook, dead) SELECT hook, 1 FROM deliveries WHERE id = $1
ON CONFLICT (hook) DO UPDATE SET dead = hook_streaks.dead + 1
RETURNING hook, dead,
    coalesce((SELECT active FROM hook_states WHERE hook = hook_streaks.hook), true) AS active
"""
RESOLVE_STREAK = """
UPDATE problems SET status = 'resolved', resolved_at = $1
WHERE hook = $2 AND status <> 'resolved'
  AND (signature LIKE 'will deactivate: %' OR signature LIKE 'deactivated: %')
"""


async def note(
    conn: asyncpg.Connection,
    delivery_id: str,
    outcome: Outcome,
    attempt: Attempt | None,
    now: float,
    disable_after: int,
) -> None:
    """As SQLite's: a dead delivery counts in its hook's streak, a crossing opens its problem
    and at the threshold switches the hook off."""
    if outcome.status != "dead":
        return
    row = await conn.fetchrow(COUNT_DEAD, delivery_id)
    assert row is not None  # finish found the delivery
    hook, dead, active = row
    signature = streak_signature(dead, disable_after)
    if signature is None or not active:
        return
    error = failure_error(outcome, attempt) or failure_signature(outcome, attempt)
    await open_problem(conn, delivery_id, signature, error, now)
    if alert_kind(signature) == "hook.deactivated":
        await switch_hook(conn, hook, False, deactivation_reason(dead), now)


async def switch_hook(
    conn: asyncpg.Connection, hook: str, active: bool, reason: str | None, at: float
) -> int:
    """Store.set_hook_active in one transaction: switching on starts the streak again."""
    changed = await deliveries_sql.set_hook_active(conn, hook, active, reason, at)
    if active:
        await conn.execute("DELETE FROM hook_streaks WHERE hook = $1", hook)
        await conn.execute(RESOLVE_STREAK, at, hook)
    return changed
