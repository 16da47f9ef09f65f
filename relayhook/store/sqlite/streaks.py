"""A hook's dead deliveries in a row, and switching hooks on and off (schema version 11).

`[alerts] disable_after = N`: in the transaction of `finish`, a dead delivery counts one more
for its hook, a success starts the count again (as switching the hook on does). One dead
delivery before N the hook's problem `will deactivate: N-1 dead in a row` opens; at N the hook
is switched off, as a person or a 410 does it (`switch_hook`), and `deactivated: N dead in a
row` opens. The alerter sends each problem once (relayhook.delivery.alerts).
"""

from __future__ import annotations

import sqlite3

from relayhook.core.problems import (
    alert_kind,
    deactivation_reason,
    failure_error,
    failure_signature,
    streak_signature,
)
from relayhook.core.records import Attempt, Outcome
from relayhook.store.sqlite import config as config_sql
from relayhook.store.sqlite import deliveries as deliveries_sql
from relayhook.store.sqlite.problems import open_problem

SCHEMA_11 = """
CREATE TABLE IF NOT EXISTS hook_streaks (
    hook        TEXT PRIMARY KEY,
    dead        INTEGER NOT NULL  -- deliveries ended dead in a row, since a success or switch-on
);
"""

COUNT_DEAD = """
INSERT INTO hook_streaks (hook, dead) VALUES (?, 1)
ON CONFLICT (hook) DO UPDATE SET dead = dead + 1
RETURNING dead
"""
RESET = "DELETE FROM hook_streaks WHERE hook = (SELECT hook FROM deliveries WHERE id = ?)"
# The problems of a streak (relayhook.core.problems.streak_signature) end with it.
RESOLVE_STREAK = """
UPDATE problems SET status = 'resolved', resolved_at = ?
WHERE hook = ? AND status <> 'resolved'
  AND (signature LIKE 'will deactivate: %' OR signature LIKE 'deactivated: %')
"""


def note(
    conn: sqlite3.Connection,
    delivery_id: str,
    outcome: Outcome,
    attempt: Attempt | None,
    now: float,
    disable_after: int,
) -> None:
    """After a delivery finished (and problems.note): count it in its hook's streak, and act
    on what the count crosses while the hook is active."""
    if outcome.status == "succeeded":
        conn.execute(RESET, (delivery_id,))
        return
    if outcome.status != "dead":
        return
    hook: str = conn.execute("SELECT hook FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()[
        0
    ]
    dead: int = conn.execute(COUNT_DEAD, (hook,)).fetchone()[0]
    signature = streak_signature(dead, disable_after)
    state = conn.execute("SELECT active FROM hook_states WHERE hook = ?", (hook,)).fetchone()
    if signature is None or (state is not None and not state[0]):
        return
    error = failure_error(outcome, attempt) or failure_signature(outcome, attempt)
    open_problem(conn, delivery_id, hook, signature, error, now)
    if alert_kind(signature) == "hook.deactivated":
        switch_hook(conn, hook, False, deactivation_reason(dead), now)


def switch_hook(
    conn: sqlite3.Connection, hook: str, active: bool, reason: str | None, at: float
) -> int:
    """Store.set_hook_active in one transaction: switching on starts the streak again."""
    changed = deliveries_sql.set_hook_active(conn, hook, active, reason, at)
    if active:
        conn.execute("DELETE FROM hook_streaks WHERE hook = ?", (hook,))
        conn.execute(RESOLVE_STREAK, (at, hook))
    config_sql.bump(conn)
    return changed
