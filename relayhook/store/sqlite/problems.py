"""Problems in SQLite (schema version 8): a hook's failures grouped by signature, kept in the
transaction of `finish`, and the deliveries each holds (for Replay affected)."""

from __future__ import annotations

import sqlite3
import uuid

from relayhook.core.problems import failure_error, failure_signature
from relayhook.core.records import Attempt, Outcome, Problem, ProblemStatus
from relayhook.store.rows import to_problem
from relayhook.store.sqlite.deliveries import REPLAY
from relayhook.store.text import to_column

# One unresolved problem per hook and signature (the partial unique index); resolved ones stay
# as history. `problem_deliveries` has no reference to deliveries: retention may delete a
# delivery, and Replay affected then replays those that are left.
SCHEMA_8 = """
CREATE TABLE IF NOT EXISTS problems (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    hook            TEXT NOT NULL,
    signature       TEXT NOT NULL,  -- relayhook.core.problems.failure_signature
    status          TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    first_at        REAL NOT NULL,
    last_at         REAL NOT NULL,
    deliveries      INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    acknowledged_at REAL,
    resolved_at     REAL,
    notified        INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS problems_current ON problems (hook, signature)
    WHERE status <> 'resolved';
CREATE TABLE IF NOT EXISTS problem_deliveries (
    problem_id  TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    PRIMARY KEY (problem_id, delivery_id)
) WITHOUT ROWID;
"""

# A relay's problems (a provider gone quiet, payloads that changed shape) share the table: their
# `hook` is empty and `relay` names the relay (a hook's have an empty `relay`); the index of
# the unresolved ones takes both. `payload_shapes`: per relay and event type, the shape of the
# bodies received (relayhook.core.shapes.Shape as JSON).
SCHEMA_RELAY_PROBLEMS = """
ALTER TABLE problems ADD COLUMN relay TEXT NOT NULL DEFAULT '';
ALTER TABLE relays ADD COLUMN expect TEXT;
ALTER TABLE problems ADD COLUMN request TEXT;
DROP INDEX IF EXISTS problems_current;
CREATE UNIQUE INDEX problems_current ON problems (hook, relay, signature)
    WHERE status <> 'resolved';
CREATE TABLE IF NOT EXISTS payload_shapes (
    relay       TEXT NOT NULL,
    type        TEXT NOT NULL,
    shape       TEXT NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (relay, type)
) WITHOUT ROWID;
"""

COLUMNS = (
    "id, hook, signature, status, first_at, last_at, deliveries, error, acknowledged_at,"
    " resolved_at, notified, relay, request"
)
OPEN = """
INSERT INTO problems (id, hook, signature, status, first_at, last_at, error)
VALUES (?, ?, ?, 'open', ?, ?, ?)
ON CONFLICT (hook, relay, signature) WHERE status <> 'resolved'
DO UPDATE SET last_at = excluded.last_at, error = excluded.error
RETURNING id
"""
RESOLVE = """
UPDATE problems SET status = 'resolved', resolved_at = ?
WHERE hook = (SELECT hook FROM deliveries WHERE id = ?) AND status <> 'resolved'
"""


def note(
    conn: sqlite3.Connection,
    delivery_id: str,
    outcome: Outcome,
    attempt: Attempt | None,
    now: float,
) -> None:
    """After a delivery finished: a success resolves the hook's problems (one indexed update
    that finds nothing while all is well); a failure joins, or opens, its signature's."""
    if outcome.status == "succeeded":
        conn.execute(RESOLVE, (now, delivery_id))
        return
    signature = failure_signature(outcome, attempt)
    if signature is None:
        return
    hook: str = conn.execute("SELECT hook FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()[
        0
    ]
    open_problem(conn, delivery_id, hook, signature, failure_error(outcome, attempt), now)


def open_problem(
    conn: sqlite3.Connection,
    delivery_id: str,
    hook: str,
    signature: str,
    error: str | None,
    now: float,
) -> None:
    """Open the hook's problem of `signature` (or join its unresolved one) with the delivery."""
    row = (f"prb_{uuid.uuid4().hex[:20]}", hook, signature, now, now, to_column(error))
    problem_id: str = conn.execute(OPEN, row).fetchone()[0]
    added = conn.execute(
        "INSERT OR IGNORE INTO problem_deliveries VALUES (?, ?)", (problem_id, delivery_id)
    ).rowcount
    if added:
        conn.execute("UPDATE problems SET deliveries = deliveries + 1 WHERE id = ?", (problem_id,))


OPEN_RELAY = """
INSERT INTO problems (id, hook, relay, signature, status, first_at, last_at, error, request)
VALUES (?, '', ?, ?, 'open', ?, ?, ?, ?)
ON CONFLICT (hook, relay, signature) WHERE status <> 'resolved'
DO UPDATE SET last_at = excluded.last_at, error = excluded.error
RETURNING id, first_at = last_at
"""


def open_relay_problem(
    conn: sqlite3.Connection, relay: str, signature: str, text: str, request: str | None, now: float
) -> bool:
    """Open the relay's problem of `signature` (or update its unresolved one's text): True
    when it is new."""
    row = (f"prb_{uuid.uuid4().hex[:20]}", relay, signature, now, now, to_column(text), request)
    opened: int = conn.execute(OPEN_RELAY, row).fetchone()[1]
    return bool(opened)


def resolve_relay_problem(conn: sqlite3.Connection, relay: str, signature: str, now: float) -> bool:
    sql = (
        "UPDATE problems SET status = 'resolved', resolved_at = ?"
        " WHERE hook = '' AND relay = ? AND signature = ? AND status <> 'resolved'"
    )
    return conn.execute(sql, (now, relay, signature)).rowcount > 0


def list_problems(
    conn: sqlite3.Connection,
    hook: str | None,
    statuses: tuple[ProblemStatus, ...],
    limit: int,
    relay: str | None = None,
) -> list[Problem]:
    sql = f"SELECT {COLUMNS} FROM problems WHERE status IN ({', '.join('?' * len(statuses))})"
    params: list[object] = list(statuses)
    if hook is not None:
        sql += " AND hook = ?"
        params.append(hook)
    if relay is not None:
        sql += " AND relay = ?"
        params.append(relay)
    sql += " ORDER BY seq DESC LIMIT ?"
    return [to_problem(row) for row in conn.execute(sql, [*params, limit])]


def get_problem(conn: sqlite3.Connection, problem_id: str) -> Problem | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM problems WHERE id = ?", (problem_id,)).fetchone()
    return None if row is None else to_problem(row)


def acknowledge(conn: sqlite3.Connection, problem_id: str, at: float) -> bool:
    sql = (
        "UPDATE problems SET status = 'acknowledged', acknowledged_at = ?"
        " WHERE id = ? AND status = 'open'"
    )
    return conn.execute(sql, (at, problem_id)).rowcount == 1


def replay(conn: sqlite3.Connection, problem_id: str, now: float, limit: int) -> int:
    where = (
        "status IN ('failed', 'dead', 'paused') AND id IN"
        " (SELECT delivery_id FROM problem_deliveries WHERE problem_id = :problem)"
    )
    replayed: int = conn.execute(
        REPLAY.format(where=where), {"now": now, "limit": limit, "problem": problem_id}
    ).rowcount
    return replayed


def mark_notified(conn: sqlite3.Connection, problem_id: str) -> bool:
    sql = "UPDATE problems SET notified = 1 WHERE id = ? AND notified = 0"
    return conn.execute(sql, (problem_id,)).rowcount == 1


def get_shapes(conn: sqlite3.Connection, relay: str) -> dict[str, str]:
    rows = conn.execute("SELECT type, shape FROM payload_shapes WHERE relay = ?", (relay,))
    return {str(type_): str(shape) for type_, shape in rows}


def save_shape(conn: sqlite3.Connection, relay: str, type_: str, shape: str, at: float) -> None:
    conn.execute(
        "INSERT INTO payload_shapes VALUES (?, ?, ?, ?) ON CONFLICT (relay, type)"
        " DO UPDATE SET shape = excluded.shape, updated_at = excluded.updated_at",
        (relay, type_, shape, at),
    )
