"""The SQLite schema, as numbered migrations. A database's version is `PRAGMA user_version`.

Add a migration at the end, never edit one that was released: a database at version n gets
n+1... applied in order, in one transaction, when the store opens (or by `relayhook migrate`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from relayhook.store.base import DELIVERY_STATUSES
from relayhook.store.migrations import Migration, check_numbering, plan
from relayhook.store.sqlite.deliveries import CLAIMABLE, UNFINISHED, one_of

# Version 1. `seq` orders rows ("newest first" = descending seq) and is what `before` pages on;
# AUTOINCREMENT so a seq is never reused, even after the newest rows are deleted. Times of
# deliveries are epoch seconds (REAL), always the caller's clock.
INITIAL = f"""
CREATE TABLE IF NOT EXISTS requests (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    relay       TEXT NOT NULL,
    received_at TEXT NOT NULL,
    method      TEXT NOT NULL,
    query       TEXT NOT NULL,
    headers     TEXT NOT NULL,  -- JSON list of [name, value] pairs, in the order received
    body        BLOB NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    error       TEXT,
    truncated   INTEGER NOT NULL DEFAULT 0  -- 1: the body was cut at max_body_bytes
);
CREATE INDEX IF NOT EXISTS requests_relay_status ON requests (relay, status);

CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    request_id  TEXT NOT NULL REFERENCES requests (id),
    relay       TEXT NOT NULL,
    type        TEXT NOT NULL,
    source      TEXT NOT NULL,
    subject     TEXT,
    time        TEXT NOT NULL,
    data        TEXT NOT NULL  -- compact JSON
);
CREATE INDEX IF NOT EXISTS events_relay_type ON events (relay, type);
CREATE INDEX IF NOT EXISTS events_subject ON events (subject);
CREATE INDEX IF NOT EXISTS events_request_id ON events (request_id);

CREATE TABLE IF NOT EXISTS auth_failures (
    relay       TEXT PRIMARY KEY,
    count       INTEGER NOT NULL,
    last_at     TEXT NOT NULL
);

-- One event x one hook. `relay` is the event's, copied so that lists need no join.
CREATE TABLE IF NOT EXISTS deliveries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    event_id    TEXT NOT NULL REFERENCES events (id),
    hook        TEXT NOT NULL,
    relay       TEXT NOT NULL,
    subject     TEXT,
    status      TEXT NOT NULL CHECK {one_of("status", DELIVERY_STATUSES)},
    tries       INTEGER NOT NULL DEFAULT 0,  -- since created or replayed: indexes the schedule
    attempts    INTEGER NOT NULL DEFAULT 0,  -- all of them: its rows in `attempts`
    due_at      REAL NOT NULL,
    lease_until REAL,
    lease_owner TEXT,
    last_status INTEGER,
    last_error  TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    UNIQUE (event_id, hook)  -- also what lists by event use
);
-- Pause/resume, replay, counts and filtered lists.
CREATE INDEX IF NOT EXISTS deliveries_hook_status ON deliveries (hook, status, seq);
-- A hook's history, newest first.
CREATE INDEX IF NOT EXISTS deliveries_hook ON deliveries (hook, seq);
-- The claim scan: a hook's open deliveries in seq order, filtered on the index alone.
CREATE INDEX IF NOT EXISTS deliveries_claimable
    ON deliveries (hook, seq, status, due_at, lease_until, subject)
    WHERE {one_of("status", CLAIMABLE)};
-- Ordered claims: "is an earlier delivery of this hook and subject unfinished?" in one seek.
CREATE INDEX IF NOT EXISTS deliveries_unfinished
    ON deliveries (hook, subject, seq) WHERE {one_of("status", UNFINISHED)};

CREATE TABLE IF NOT EXISTS attempts (
    delivery_id      TEXT NOT NULL REFERENCES deliveries (id),
    number           INTEGER NOT NULL,  -- 1, 2, ... per delivery
    started_at       REAL NOT NULL,
    duration_ms      REAL NOT NULL,
    request          TEXT NOT NULL,     -- JSON object: method, url, headers, body...
    response_status  INTEGER,
    response_headers TEXT NOT NULL,     -- JSON list of [name, value] pairs
    response_body    BLOB NOT NULL,
    error_class      TEXT,
    error            TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS hook_states (
    hook        TEXT PRIMARY KEY,
    active      INTEGER NOT NULL,
    reason      TEXT,
    at          REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS hooks (
    name        TEXT PRIMARY KEY,
    source      TEXT NOT NULL,  -- config (written at start) or, later, ui
    spec        TEXT NOT NULL,  -- JSON of the hook as written, with no secret value in it
    updated_at  REAL NOT NULL
);
"""


# A hook's pacing state (its rate limit's next free slots), shared by every dispatcher that sends
# through it: JSON of relayhook.pacing.RateLimit.state().
PACING = """
CREATE TABLE hook_pacing (
    hook        TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
"""

MIGRATIONS = (
    Migration(1, "requests, events, deliveries, attempts, hooks", INITIAL),
    Migration(2, "hook pacing shared by all dispatchers", PACING),
)
check_numbering(MIGRATIONS)
LATEST = MIGRATIONS[-1].version


def statements(sql: str) -> Iterator[str]:
    """The statements of a script, one at a time (executescript would commit first)."""
    buffer = ""
    for part in sql.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \n;"):
        raise ValueError(f"an incomplete statement ends the script: {buffer!r}")


def migrate(conn: sqlite3.Connection, path: Path, *, apply: bool) -> list[Migration]:
    """Bring the database to LATEST (or refuse, see migrations.plan); the migrations applied.
    Under the write lock from the first read of the version, so two processes starting at once
    apply each migration once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        pending = plan(version, MIGRATIONS, where=str(path), migrate=apply)
        for migration in pending:
            for statement in statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {migration.version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return pending
