"""The SQLite schema, as numbered migrations. A database's version is `PRAGMA user_version`.

Add a migration at the end, never edit one that was released: a database at version n gets
n+1... applied in order, each in its own transaction under the write lock, when the store opens
(or by `relayhook migrate`). Versions 1-5 are those relayhook 0.x files already carry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from relayhook.core.records import DELIVERY_STATUSES
from relayhook.store.base import StoreError
from relayhook.store.migrations import Migration, check_numbering, plan
from relayhook.store.sqlite.deliveries import CLAIMABLE, INDEXES_V10, UNFINISHED, one_of
from relayhook.store.sqlite.ops import INDEXES_V5
from relayhook.store.sqlite.outcomes import SCHEMA_7 as OUTCOMES
from relayhook.store.sqlite.problems import SCHEMA_8 as PROBLEMS
from relayhook.store.sqlite.problems import SCHEMA_RELAY_PROBLEMS as RELAY_PROBLEMS
from relayhook.store.sqlite.requests import SCHEMA_4
from relayhook.store.sqlite.samples import SCHEMA_9 as SAMPLES
from relayhook.store.sqlite.streaks import SCHEMA_11 as STREAKS

# One event x one hook. `relay` is the event's, copied so that lists need no join. Version 2
# rebuilds the table with this DDL (its CHECK gained `cancelled`), so it is kept apart.
DELIVERIES = f"""
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
"""

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
{DELIVERIES}
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
    source      TEXT NOT NULL,  -- config (written at start) or api (the API, the console)
    spec        TEXT NOT NULL,  -- JSON of the hook as written, [redacted] for every secret
    updated_at  REAL NOT NULL
);
"""

# Version 2: relays and hooks as live data (an api hook's secret values sealed, see
# relayhook.sealing), the counter every process polls, and the `cancelled` delivery status.
# SQLite cannot change a CHECK constraint in place: `deliveries` is rebuilt the documented way
# (https://sqlite.org/lang_altertable.html#otheralter).
LIVE_CONFIG = f"""
{
    DELIVERIES.split(";")[0].replace(
        "CREATE TABLE IF NOT EXISTS deliveries (", "CREATE TABLE deliveries_new ("
    )
};
INSERT INTO deliveries_new SELECT * FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
{DELIVERIES}
ALTER TABLE hooks ADD COLUMN sealed TEXT;
CREATE TABLE IF NOT EXISTS relays (
    name        TEXT PRIMARY KEY,
    connector   TEXT NOT NULL,
    source      TEXT NOT NULL,  -- api (config relays live in the config file only)
    sealed      TEXT NOT NULL,  -- its token and secret, encrypted (relayhook.sealing)
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS config_version (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL
);
INSERT OR IGNORE INTO config_version (id, version) VALUES (1, 0);
"""

# Version 3: the console's own state, shared by every process: its password hash and session
# key.
ADMIN_VALUES = """
CREATE TABLE IF NOT EXISTS admin_values (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
"""

# Version 6: a hook's pacing state (its rate limit's next free slots), shared by every
# dispatcher that sends through it: JSON of relayhook.core.pacing.RateLimit.state().
PACING = """
CREATE TABLE IF NOT EXISTS hook_pacing (
    hook        TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
"""

# Console sessions, one row per sign-in (relayhook.web.console.session): the cookie holds a
# random token, the row its SHA-256 (`token_hash`), so a copy of the database signs no one in.
# `account` is whose session it is: today the one admin ("admin"); people of their own later.
SESSIONS = """
CREATE TABLE IF NOT EXISTS console_sessions (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    account       TEXT NOT NULL,
    created_at    REAL NOT NULL,
    last_seen_at  REAL NOT NULL,
    expires_at    REAL NOT NULL,
    address       TEXT NOT NULL,
    user_agent    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_account ON console_sessions (account, expires_at);
"""

# People, their one-time links (invites and resets), API keys and the append-only audit log
# (relayhook.people). Tokens are kept as their SHA-256 only.
PEOPLE = """
CREATE TABLE IF NOT EXISTS accounts (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT,
    created_at    REAL NOT NULL,
    disabled_at   REAL,
    origin        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_email ON accounts (lower(email));
CREATE TABLE IF NOT EXISTS account_links (
    token_hash    TEXT PRIMARY KEY,
    account       TEXT NOT NULL,
    expires_at    REAL NOT NULL,
    used_at       REAL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    relays        TEXT NOT NULL,
    hooks         TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    REAL NOT NULL,
    expires_at    REAL,
    last_used_at  REAL,
    revoked_at    REAL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            REAL NOT NULL,
    actor         TEXT NOT NULL,
    actor_name    TEXT NOT NULL,
    address       TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    detail        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target, id);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
"""

MIGRATIONS = (
    Migration(1, "requests, events, deliveries, attempts, hooks", INITIAL),
    Migration(2, "relays and hooks as live data, cancelled deliveries", LIVE_CONFIG, rebuilds=True),
    Migration(3, "the console's password and session key", ADMIN_VALUES),
    Migration(4, "the events each request mapped to, test sends", SCHEMA_4),
    Migration(5, "indexes for retention and the backlog", INDEXES_V5),
    Migration(6, "hook pacing shared by all dispatchers", PACING),
    Migration(7, "why each hook did or did not fire, per request", OUTCOMES),
    Migration(8, "problems: a hook's failures grouped by signature", PROBLEMS),
    Migration(9, "saved samples: requests and events pinned by name", SAMPLES),
    Migration(10, "claims that seek the due deliveries, not the whole backlog", INDEXES_V10),
    Migration(11, "dead deliveries in a row per hook, for [alerts] disable_after", STREAKS),
    Migration(12, "console sessions, one row per sign-in", SESSIONS),
    Migration(13, "relays' problems (quiet, changed shape) and payload shapes", RELAY_PROBLEMS),
    Migration(14, "people, API keys and the audit log", PEOPLE),
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


def user_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(
    conn: sqlite3.Connection, path: Path, *, apply: bool, upto: int | None = None
) -> list[Migration]:
    """Bring the database to LATEST (or refuse, see migrations.plan); the migrations applied.
    Each one under the write lock, the version read again inside it, so two processes starting
    at once apply each migration once."""
    pending = plan(user_version(conn), MIGRATIONS, where=str(path), migrate=apply, upto=upto)
    applied = []
    for migration in pending:
        if migration.rebuilds:
            conn.execute("PRAGMA foreign_keys = OFF")
        try:
            if _apply(conn, migration):
                applied.append(migration)
        finally:
            conn.execute("PRAGMA foreign_keys = ON")
    return applied


def _apply(conn: sqlite3.Connection, migration: Migration) -> bool:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if user_version(conn) >= migration.version:  # another process was first
            conn.execute("ROLLBACK")
            return False
        for statement in statements(migration.sql):
            conn.execute(statement)
        problems = migration.rebuilds and conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise StoreError(f"migration {migration} left broken references: {problems[:3]}")
        conn.execute(f"PRAGMA user_version = {migration.version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True
