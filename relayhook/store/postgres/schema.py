"""The PostgreSQL schema, as numbered migrations; the versions applied are rows of
`schema_migrations`. Add a migration at the end, never edit one that was released.

The tables mirror SQLite's, with PostgreSQL's types: `seq` is an identity (never reused), times
of deliveries are epoch seconds (`double precision`, the caller's clock), JSON is kept as `text`
(the exact JSON the engine wrote, see relayhook.store.text), bodies as `bytea`. Each migration runs
in its own transaction (DDL is transactional here), under an advisory lock, so that processes
starting together apply each one once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relayhook.core.records import DELIVERY_STATUSES, FINAL_STATUSES
from relayhook.store.migrations import Migration, check_numbering, plan
from relayhook.store.postgres.outcomes import SCHEMA as OUTCOMES

if TYPE_CHECKING:
    import asyncpg

MIGRATION_LOCK = 0x72656C6179  # "relay": one advisory lock key for migrating

CLAIMABLE = "('pending', 'failed', 'claimed')"
UNFINISHED = "('pending', 'failed', 'claimed', 'paused')"
STATUSES = "(" + ", ".join(f"'{status}'" for status in DELIVERY_STATUSES) + ")"

INITIAL = f"""
CREATE TABLE requests (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    relay       text NOT NULL,
    received_at text NOT NULL,
    method      text NOT NULL,
    query       text NOT NULL,
    headers     text NOT NULL,  -- JSON list of [name, value] pairs, in the order received
    body        bytea NOT NULL,
    status      text NOT NULL CHECK (status IN ('accepted', 'rejected')),
    error       text,
    truncated   boolean NOT NULL DEFAULT false
);
CREATE INDEX requests_relay_status ON requests (relay, status);

CREATE TABLE events (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    request_id  text NOT NULL REFERENCES requests (id),
    relay       text NOT NULL,
    type        text NOT NULL,
    source      text NOT NULL,
    subject     text,
    time        text NOT NULL,
    data        text NOT NULL  -- compact JSON
);
CREATE INDEX events_relay_type ON events (relay, type);
CREATE INDEX events_subject ON events (subject);
CREATE INDEX events_request_id ON events (request_id);

CREATE TABLE auth_failures (
    relay       text PRIMARY KEY,
    count       bigint NOT NULL,
    last_at     text NOT NULL
);

CREATE TABLE deliveries (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    event_id    text NOT NULL REFERENCES events (id),
    hook        text NOT NULL,
    relay       text NOT NULL,
    subject     text,
    status      text NOT NULL CHECK (status IN {STATUSES}),
    tries       integer NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 0,
    due_at      double precision NOT NULL,
    lease_until double precision,
    lease_owner text,
    last_status integer,
    last_error  text,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL,
    UNIQUE (event_id, hook)
);
CREATE INDEX deliveries_hook_status ON deliveries (hook, status, seq);
CREATE INDEX deliveries_hook ON deliveries (hook, seq);
CREATE INDEX deliveries_claimable ON deliveries (hook, seq) WHERE status IN {CLAIMABLE};
CREATE INDEX deliveries_unfinished ON deliveries (hook, subject, seq) WHERE status IN {UNFINISHED};

CREATE TABLE attempts (
    delivery_id      text NOT NULL REFERENCES deliveries (id),
    number           integer NOT NULL,
    started_at       double precision NOT NULL,
    duration_ms      double precision NOT NULL,
    request          text NOT NULL,
    response_status  integer,
    response_headers text NOT NULL,
    response_body    bytea NOT NULL,
    error_class      text,
    error            text,
    PRIMARY KEY (delivery_id, number)
);

CREATE TABLE hook_states (
    hook        text PRIMARY KEY,
    active      boolean NOT NULL,
    reason      text,
    at          double precision NOT NULL
);

CREATE TABLE hooks (
    name        text PRIMARY KEY,
    source      text NOT NULL,
    spec        text NOT NULL,
    updated_at  double precision NOT NULL
);
"""

PACING = """
CREATE TABLE hook_pacing (
    hook        text PRIMARY KEY,
    state       text NOT NULL,  -- JSON of relayhook.core.pacing.RateLimit.state()
    updated_at  double precision NOT NULL
);
"""

FINAL = "(" + ", ".join(f"'{status}'" for status in FINAL_STATUSES) + ")"

# What SQLite's versions 2-5 brought: relays and hooks as live data (an api hook's secret values
# sealed, see relayhook.sealing) and the version every process reads to know when to read them
# again; the `cancelled` status; the console's values; the events each request mapped to and
# the test sends; the indexes retention and the backlog read.
LIVE_CONFIG = f"""
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN {STATUSES});
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS test boolean NOT NULL DEFAULT false;
ALTER TABLE hooks ADD COLUMN IF NOT EXISTS sealed text;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS event_ids text;  -- JSON list of the ids it mapped to
ALTER TABLE requests ADD COLUMN IF NOT EXISTS test boolean NOT NULL DEFAULT false;
CREATE TABLE relays (
    name        text PRIMARY KEY,
    connector   text NOT NULL,
    source      text NOT NULL,
    sealed      text NOT NULL,  -- its token and secret, encrypted (relayhook.sealing)
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);
CREATE TABLE config_version (
    id          integer PRIMARY KEY CHECK (id = 1),
    version     bigint NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);
CREATE TABLE admin_values (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  double precision NOT NULL
);
CREATE INDEX requests_received_at ON requests (received_at);
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE status IN {FINAL};
CREATE INDEX deliveries_stuck ON deliveries (hook, status) WHERE status IN ('dead', 'paused');
"""

# Migration 5: a hook's failures grouped by signature (relayhook.store.postgres.problems).
PROBLEMS = """
CREATE TABLE problems (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text NOT NULL UNIQUE,
    hook            text NOT NULL,
    signature       text NOT NULL,
    status          text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    first_at        double precision NOT NULL,
    last_at         double precision NOT NULL,
    deliveries      integer NOT NULL DEFAULT 0,
    error           text,
    acknowledged_at double precision,
    resolved_at     double precision,
    notified        boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX problems_current ON problems (hook, signature) WHERE status <> 'resolved';
CREATE TABLE problem_deliveries (
    problem_id  text NOT NULL,
    delivery_id text NOT NULL,
    PRIMARY KEY (problem_id, delivery_id)
);
"""

# A copy, not a reference: retention deletes requests and events, a sample stays.
SAMPLES = """
CREATE TABLE IF NOT EXISTS samples (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('request', 'event')),
    source_id   text NOT NULL,
    payload     text NOT NULL,
    saved_at    double precision NOT NULL
);
"""

# Per hook, its deliveries that ended dead in a row since its last success or switch-on
# ([alerts] disable_after; relayhook.store.postgres.streaks).
STREAKS = """
CREATE TABLE IF NOT EXISTS hook_streaks (
    hook        text PRIMARY KEY,
    dead        integer NOT NULL
);
"""

# `/api/events?request=`: `WHERE request_id = $1 ORDER BY seq DESC LIMIT n` walked the primary
# key backwards and filtered (a prepared statement's generic plan: 69 ms at 150k events, growing
# with the table); with (request_id, seq) it reads the request's own events, newest first.
EVENTS_BY_REQUEST = """
CREATE INDEX IF NOT EXISTS events_request_seq ON events (request_id, seq);
DROP INDEX IF EXISTS events_request_id;
"""

# Console sessions, one row per sign-in: the same table as SQLite's (its migration 12).
SESSIONS = """
CREATE TABLE IF NOT EXISTS console_sessions (
    id            text PRIMARY KEY,
    token_hash    text NOT NULL UNIQUE,
    account       text NOT NULL,
    created_at    double precision NOT NULL,
    last_seen_at  double precision NOT NULL,
    expires_at    double precision NOT NULL,
    address       text NOT NULL,
    user_agent    text NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_account ON console_sessions (account, expires_at);
"""

# A relay's problems: see relayhook.store.sqlite.problems.RELAY_PROBLEMS.
RELAY_PROBLEMS = """
ALTER TABLE problems ADD COLUMN relay text NOT NULL DEFAULT '';
ALTER TABLE relays ADD COLUMN expect text;
ALTER TABLE problems ADD COLUMN request text;
DROP INDEX IF EXISTS problems_current;
CREATE UNIQUE INDEX problems_current ON problems (hook, relay, signature)
    WHERE status <> 'resolved';
CREATE TABLE IF NOT EXISTS payload_shapes (
    relay       text NOT NULL,
    type        text NOT NULL,
    shape       text NOT NULL,
    updated_at  double precision NOT NULL,
    PRIMARY KEY (relay, type)
);
"""

# People, their one-time links (invites and resets), API keys and the append-only audit log
# (relayhook.people). Tokens are kept as their SHA-256 only.
PEOPLE = """
CREATE TABLE IF NOT EXISTS accounts (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    email         text NOT NULL,
    role          text NOT NULL,
    password_hash text,
    created_at    double precision NOT NULL,
    disabled_at   double precision,
    origin        text NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_email ON accounts (lower(email));
CREATE TABLE IF NOT EXISTS account_links (
    token_hash    text PRIMARY KEY,
    account       text NOT NULL,
    expires_at    double precision NOT NULL,
    used_at       double precision
);
CREATE TABLE IF NOT EXISTS api_keys (
    id            text PRIMARY KEY,
    token_hash    text NOT NULL UNIQUE,
    name          text NOT NULL,
    role          text NOT NULL,
    relays        text NOT NULL,
    hooks         text NOT NULL,
    created_by    text NOT NULL,
    created_at    double precision NOT NULL,
    expires_at    double precision,
    last_used_at  double precision,
    revoked_at    double precision
);
CREATE TABLE IF NOT EXISTS audit_log (
    id            bigserial PRIMARY KEY,
    at            double precision NOT NULL,
    actor         text NOT NULL,
    actor_name    text NOT NULL,
    address       text NOT NULL,
    action        text NOT NULL,
    target        text NOT NULL,
    detail        text NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target, id);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
"""

MIGRATIONS = (
    Migration(1, "requests, events, deliveries, attempts, hooks", INITIAL),
    Migration(2, "hook pacing shared by all dispatchers", PACING),
    Migration(
        3, "live configuration, console values, event ids, test sends, retention", LIVE_CONFIG
    ),
    Migration(4, "why each hook did or did not fire, per request", OUTCOMES),
    Migration(5, "problems: a hook's failures grouped by signature", PROBLEMS),
    Migration(6, "saved samples: requests and events pinned by name", SAMPLES),
    Migration(7, "dead deliveries in a row per hook, for [alerts] disable_after", STREAKS),
    Migration(
        8, "a request's events by (request_id, seq): /api/events?request=", EVENTS_BY_REQUEST
    ),
    Migration(9, "console sessions, one row per sign-in", SESSIONS),
    Migration(10, "relays' problems (quiet, changed shape) and payload shapes", RELAY_PROBLEMS),
    Migration(11, "people, API keys and the audit log", PEOPLE),
)
check_numbering(MIGRATIONS)
LATEST = MIGRATIONS[-1].version

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return version


async def migrate(conn: asyncpg.Connection, where: str, *, apply: bool) -> list[Migration]:
    """Bring the database to LATEST (or refuse, see migrations.plan); the migrations applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        pending = plan(await current_version(conn), MIGRATIONS, where=where, migrate=apply)
        if pending:
            await conn.execute(BOOKKEEPING)
        for migration in pending:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        return pending
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
