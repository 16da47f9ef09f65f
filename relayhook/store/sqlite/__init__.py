"""The SQLite engine of the store contract: one writer thread with group commit, pooled readers.

The threads are in `threads` (why one writer, and what group commit buys), the SQL of
deliveries in `deliveries`. This module holds the schema, its migration, the requests and
events, and the `SQLiteStore` that puts it all behind the `Store` contract.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from relayhook.events import Event, format_time
from relayhook.records import (
    DELIVERY_STATUSES,
    ActivityRow,
    Attempt,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    IngestResult,
    NewDelivery,
    Outcome,
    RequestRecord,
    RequestStatus,
)
from relayhook.store.base import (
    BacklogEntry,
    Cutoffs,
    PruneResult,
    StoredHook,
    StoredRelay,
    StoreError,
)
from relayhook.store.sqlite import browse
from relayhook.store.sqlite import config as config_sql
from relayhook.store.sqlite import deliveries as deliveries_sql
from relayhook.store.sqlite import ops as sqlite_ops
from relayhook.store.sqlite import requests as requests_sql
from relayhook.store.sqlite.deliveries import CLAIMABLE, UNFINISHED, one_of
from relayhook.store.sqlite.requests import INSERT_REQUEST, REQUEST_COLUMNS
from relayhook.store.sqlite.rows import EVENT_COLUMNS, Row, dumps_data, page_query, to_event, where
from relayhook.store.sqlite.threads import GroupCommitWriter, ReaderPool

T = TypeVar("T")

SCHEMA_VERSION = 6
SYNCHRONOUS_LEVELS = ("NORMAL", "FULL", "EXTRA")
# How long a write waits for another process (the CLI, a backup) to release the write lock.
# Short: the ingress does not wait on it (it spools after [spool] store_timeout), and a writer
# stuck in a long wait holds up every other write of this process behind it.
BUSY_TIMEOUT_SECONDS = 1.0
READERS = 4
# The writer's page cache. Delivery and event ids are random keys, so every write touches pages
# all over their indexes; with SQLite's default 2 MiB, routing a GMetri batch into a store of
# 100k deliveries took twice as long.
WRITER_CACHE_KIB = 32 * 1024

# Version 2: relays and hooks as live data, and the counter every process polls.
CONFIG_SCHEMA = """
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
ADMIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS admin_values (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
"""

# Version 1. `seq` orders rows ("newest first" = descending seq) and is what `before` pages on;
# AUTOINCREMENT so a seq is never reused, even after the newest rows are deleted. Times of
# deliveries are epoch seconds (REAL), always the caller's clock.
SCHEMA = f"""
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
    source      TEXT NOT NULL,  -- config (written at start) or api (the API, the console)
    spec        TEXT NOT NULL,  -- JSON of the hook as written, [redacted] for every secret
    updated_at  REAL NOT NULL,
    sealed      TEXT            -- an api hook's secret values, encrypted (relayhook.sealing)
);
""" + CONFIG_SCHEMA + ADMIN_SCHEMA



INSERT_EVENT = (
    "INSERT INTO events (id, request_id, relay, type, source, subject, time, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
RECORD_AUTH_FAILURE = (
    "INSERT INTO auth_failures (relay, count, last_at) VALUES (?, 1, ?)"
    " ON CONFLICT (relay) DO UPDATE SET count = count + 1, last_at = max(last_at, excluded.last_at)"
)


class SQLiteStore:
    """`Store` on one SQLite file.

    `synchronous` is SQLite's durability level for commits (FULL: a commit survives power loss);
    `max_batch` caps how many jobs share one transaction; `busy_timeout` is how long a write
    waits for another process's lock (seconds). `commits` counts write transactions.
    """

    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", max_batch: int = 256,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_LEVELS:
            levels = ", ".join(SYNCHRONOUS_LEVELS)
            raise ValueError(f"synchronous must be one of {levels}, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self._writer = GroupCommitWriter(max_batch=max_batch)
        self._readers = ReaderPool(self._connect_reader, READERS)

    @property
    def max_batch(self) -> int:
        return self._writer.max_batch

    @property
    def commits(self) -> int:
        return self._writer.commits

    # -- lifecycle

    async def open(self) -> None:
        if self._writer.started:
            raise StoreError("a store is opened once")
        try:
            conn = await asyncio.to_thread(self._connect_writer)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._writer.start(conn)

    async def close(self) -> None:
        await self._writer.stop()
        self._readers.close()

    # -- writes: requests and events

    async def ingest(
        self,
        request: RequestRecord,
        events: Sequence[Event],
        deliveries: Sequence[NewDelivery] = (),
    ) -> IngestResult:
        _check_events(request.status, events)
        request_row = requests_sql.request_row(request, events)
        event_rows = _event_rows(events, request.id)
        delivery_rows = deliveries_sql.delivery_rows(deliveries, events)

        def job(conn: sqlite3.Connection) -> IngestResult:
            if conn.execute(INSERT_REQUEST, request_row).rowcount == 0:
                return IngestResult(accepted=0, duplicates=0, already_stored=True)
            return _insert_events(conn, event_rows, delivery_rows)

        return await self._write(job)

    async def remap(
        self,
        request_id: str,
        events: Sequence[Event],
        *,
        status: RequestStatus,
        error: str | None,
        deliveries: Sequence[NewDelivery] = (),
    ) -> IngestResult:
        _check_events(status, events)
        event_rows = _event_rows(events, request_id)
        delivery_rows = deliveries_sql.delivery_rows(deliveries, events)

        def job(conn: sqlite3.Connection) -> IngestResult:
            requests_sql.set_mapped(conn, request_id, status, error, events)
            return _insert_events(conn, event_rows, delivery_rows)

        return await self._write(job)

    async def record_test(self, request: RequestRecord, event: Event, delivery: NewDelivery,
                          attempt: Attempt | None, outcome: Outcome) -> None:
        _check_test(request, event, delivery, outcome)
        deliveries_sql.check_finish(delivery.id, outcome, attempt)
        request_row = requests_sql.request_row(request, [event])
        event_row = _event_rows([event], request.id)[0]

        def job(conn: sqlite3.Connection) -> None:
            requests_sql.record_test(conn, request_row, event_row, delivery, event.relay,
                                     attempt, outcome)

        await self._write(job)

    async def record_auth_failure(self, relay: str, at: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(RECORD_AUTH_FAILURE, (relay, at))

        await self._write(job)

    # -- reads: requests and events

    async def auth_failures(self) -> dict[str, tuple[int, str]]:
        def fetch(conn: sqlite3.Connection) -> dict[str, tuple[int, str]]:
            rows = conn.execute("SELECT relay, count, last_at FROM auth_failures ORDER BY relay")
            return {relay: (count, last_at) for relay, count, last_at in rows}

        return await self._read(fetch)

    async def get_request(self, request_id: str) -> RequestRecord | None:
        def fetch(conn: sqlite3.Connection) -> RequestRecord | None:
            sql = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?"
            records = requests_sql.with_event_ids(conn, conn.execute(sql, (request_id,)).fetchall())
            return records[0] if records else None

        return await self._read(fetch)

    async def list_requests(
        self,
        *,
        relay: str | None = None,
        status: RequestStatus | None = None,
        limit: int = 50,
        before: str | None = None,
        text: str | None = None,
    ) -> list[RequestRecord]:
        pattern = browse.like_pattern(text) if text else None
        filters = [("relay = ?", relay), ("status = ?", status),
                   ("CAST(body AS TEXT) LIKE ? ESCAPE '\\'", pattern)]
        sql, params = page_query("requests", REQUEST_COLUMNS, filters, before, limit)
        return await self._read(
            lambda conn: requests_sql.with_event_ids(conn, conn.execute(sql, params)))

    async def list_events(
        self,
        *,
        relay: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        request_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Event]:
        filters = [
            ("relay = ?", relay),
            ("type = ?", type),
            ("subject = ?", subject),
            ("request_id = ?", request_id),
        ]
        sql, params = page_query("events", EVENT_COLUMNS, filters, before, limit)
        return await self._read(lambda conn: [to_event(row) for row in conn.execute(sql, params)])

    async def count_events(self, *, relay: str | None = None, source: str | None = None) -> int:
        clause, params = where([("relay = ?", relay), ("source = ?", source)])
        sql = f"SELECT count(*) FROM events {clause}"
        count: int = await self._read(lambda conn: conn.execute(sql, params).fetchone()[0])
        return count

    # -- deliveries

    async def claim_due(
        self,
        *,
        hook: str,
        now: float,
        limit: int,
        lease_seconds: float,
        owner: str,
        ordered: bool = False,
    ) -> list[Delivery]:
        if limit < 0 or lease_seconds <= 0:
            raise ValueError(f"need limit >= 0 and lease_seconds > 0: {limit}, {lease_seconds}")
        if limit == 0:
            return []
        lease_until = now + lease_seconds
        return await self._write(
            lambda conn: deliveries_sql.claim_due(
                conn,
                hook=hook,
                now=now,
                limit=limit,
                lease_until=lease_until,
                owner=owner,
                ordered=ordered,
            )
        )

    async def finish(
        self, delivery_id: str, *, owner: str, outcome: Outcome, attempt: Attempt | None
    ) -> bool:
        deliveries_sql.check_finish(delivery_id, outcome, attempt)
        return await self._write(
            lambda conn: deliveries_sql.finish(
                conn, delivery_id, owner=owner, outcome=outcome, attempt=attempt
            )
        )

    async def set_hook_active(self, hook: str, active: bool, reason: str | None, at: float) -> int:
        def job(conn: sqlite3.Connection) -> int:
            changed = deliveries_sql.set_hook_active(conn, hook, active, reason, at)
            config_sql.bump(conn)
            return changed

        return await self._write(job)

    async def hook_states(self) -> dict[str, tuple[bool, str | None, float]]:
        return await self._read(deliveries_sql.hook_states)

    async def save_hooks(self, source: str, specs: Mapping[str, dict[str, Any]],
                         at: float) -> None:
        await self._write(lambda conn: config_sql.save_hooks(conn, source, specs, at))

    async def list_hooks(self) -> list[StoredHook]:
        return await self._read(config_sql.list_hooks)

    # -- live configuration

    async def config_version(self) -> int:
        return await self._read(config_sql.config_version)

    async def put_hook(self, hook: StoredHook, *, create: bool) -> bool:
        return await self._write(lambda conn: config_sql.put_hook(conn, hook, create))

    async def delete_hook(self, name: str, *, at: float) -> int | None:
        return await self._write(lambda conn: config_sql.delete_hook(conn, name, at))

    async def list_relays(self) -> list[StoredRelay]:
        return await self._read(config_sql.list_relays)

    async def create_relay(self, relay: StoredRelay) -> bool:
        return await self._write(lambda conn: config_sql.create_relay(conn, relay))

    async def update_relay(self, name: str, *, sealed: str, at: float) -> bool:
        return await self._write(lambda conn: config_sql.update_relay(conn, name, sealed, at))

    async def delete_relay(self, name: str) -> bool:
        return await self._write(lambda conn: config_sql.delete_relay(conn, name))

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[Attempt]] | None:
        return await self._read(lambda conn: deliveries_sql.get_delivery(conn, delivery_id))

    async def list_deliveries(
        self,
        *,
        hook: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Delivery]:
        filters = [("hook = ?", hook), ("status = ?", status), ("event_id = ?", event_id)]
        columns = deliveries_sql.DELIVERY_COLUMNS
        sql, params = page_query("deliveries", columns, filters, before, limit)
        return await self._read(
            lambda conn: [deliveries_sql.delivery(row) for row in conn.execute(sql, params)]
        )

    async def count_deliveries(
        self, *, hook: str | None = None, status: DeliveryStatus | None = None
    ) -> dict[str, int]:
        return await self._read(lambda conn: deliveries_sql.count_deliveries(conn, hook, status))

    async def replay(
        self,
        *,
        now: float,
        delivery_id: str | None = None,
        hook: str | None = None,
        statuses: Sequence[DeliveryStatus] = ("dead",),
        since: float | None = None,
        limit: int = 500,
    ) -> int:
        deliveries_sql.check_replay(delivery_id, statuses, limit)
        if limit == 0:
            return 0
        return await self._write(
            lambda conn: deliveries_sql.replay(
                conn,
                now=now,
                delivery_id=delivery_id,
                hook=hook,
                statuses=tuple(statuses),
                since=since,
                limit=limit,
            )
        )

    # -- browsing: history, activity, the console's values

    async def find_deliveries(
        self, where: DeliveryFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Delivery]:
        return await self._read(lambda conn: browse.find_deliveries(conn, where, limit, before))

    async def count_found_deliveries(self, where: DeliveryFilter) -> int:
        return await self._read(lambda conn: browse.count_found_deliveries(conn, where))

    async def request_activity(self, *, since: float, bucket_seconds: float) -> list[ActivityRow]:
        since_text = format_time(datetime.fromtimestamp(since, UTC))
        return await self._read(
            lambda conn: browse.request_activity(conn, since_text, since, bucket_seconds))

    async def delivery_activity(self, *, since: float, bucket_seconds: float) -> list[ActivityRow]:
        return await self._read(lambda conn: browse.delivery_activity(conn, since, bucket_seconds))

    async def get_admin_value(self, name: str) -> str | None:
        return await self._read(lambda conn: browse.get_admin_value(conn, name))

    async def set_admin_value(self, name: str, value: str, at: float, *,
                              replace: bool = True) -> bool:
        return await self._write(
            lambda conn: browse.set_admin_value(conn, name, value, at, replace))

    # -- operations

    async def prune(self, cutoffs: Cutoffs, *, batch: int = 500) -> PruneResult:
        result: PruneResult = await sqlite_ops.Pruner(cutoffs, batch).run(self._read,
                                                                            self._write)
        if result != PruneResult():
            await asyncio.to_thread(sqlite_ops.checkpoint, self.path)
        return result

    async def backlog(self) -> list[BacklogEntry]:
        return await self._read(sqlite_ops.backlog)

    async def probe_write(self) -> None:
        await self._write(lambda conn: None)

    async def schema_current(self) -> bool:
        version = await self._read(lambda conn: conn.execute("PRAGMA user_version").fetchone())
        return bool(version[0] == SCHEMA_VERSION)

    async def backup(self, target: Path) -> None:
        await asyncio.to_thread(sqlite_ops.backup, self._connect, Path(target))

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. Connections move between
        # threads (the opener, the writer, to_thread workers) but are never shared at once.
        return sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )

    def _connect_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            conn.execute(f"PRAGMA journal_size_limit = {sqlite_ops.JOURNAL_SIZE_LIMIT}")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")  # writes belong to the writer thread alone
        return conn

    # -- running jobs

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._readers.run, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer.submit(fn)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this relayhook's"
            f" ({SCHEMA_VERSION}): upgrade relayhook"
        )
    if version == 0:  # a new file: SCHEMA as it stood at version 3, then the steps after it
        conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = 3; COMMIT;")
        version = 3
    for number, step in _steps():
        if version < number:
            step(conn)


def _steps() -> list[tuple[int, Callable[[sqlite3.Connection], None]]]:
    """The upgrades of an older file, in order: (the version each brings, how). A new step
    takes the next number and goes at the end; SCHEMA itself stays as version 3 made it."""

    def script(ddl: str, number: int) -> Callable[[sqlite3.Connection], None]:
        def step(conn: sqlite3.Connection) -> None:
            conn.executescript(f"BEGIN IMMEDIATE; {ddl} PRAGMA user_version = {number}; COMMIT;")

        return step

    return [
        (2, _migrate_1_to_2),
        (3, script(ADMIN_SCHEMA, 3)),
        (4, script(requests_sql.SCHEMA_4, 4)),
        (5, script(sqlite_ops.INDEXES_V5, 5)),  # retention and metrics read these
        (6, script(deliveries_sql.INDEXES_V6, 6)),  # claims that do not read the backlog
    ]


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Relays and hooks as data (CONFIG_SCHEMA, hooks.sealed) and the `cancelled` delivery
    status. SQLite cannot change a CHECK constraint in place, so `deliveries` is rebuilt the
    documented way (https://sqlite.org/lang_altertable.html#otheralter), foreign keys off."""
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        deliveries_ddl = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS deliveries"):
                                SCHEMA.index("CREATE TABLE IF NOT EXISTS attempts")]
        new_table = deliveries_ddl.split(";")[0].replace(
            "CREATE TABLE IF NOT EXISTS deliveries (", "CREATE TABLE deliveries_new (")
        conn.executescript(
            f"BEGIN IMMEDIATE; {new_table};"
            " INSERT INTO deliveries_new SELECT * FROM deliveries;"
            " DROP TABLE deliveries;"
            " ALTER TABLE deliveries_new RENAME TO deliveries;"
            f" {deliveries_ddl}"  # the table exists now: this makes its indexes
            " ALTER TABLE hooks ADD COLUMN sealed TEXT;"
            f" {CONFIG_SCHEMA}"
            " PRAGMA user_version = 2; COMMIT;"
        )
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise StoreError(f"migration to version 2 left broken references: {problems[:3]}")
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


# -- rows (built in the caller's thread, so the writer thread only runs SQL)


def _check_events(status: RequestStatus, events: Sequence[Event]) -> None:
    if status == "rejected" and events:
        raise ValueError("a rejected request comes with no events")


def _check_test(request: RequestRecord, event: Event, delivery: NewDelivery,
                outcome: Outcome) -> None:
    if not request.test or request.status != "accepted":
        raise ValueError("a test send's request is marked test and accepted")
    if delivery.event_id != event.id or outcome.status not in ("succeeded", "dead"):
        raise ValueError("a test send is one delivery of its event, succeeded or dead")


def _event_rows(events: Sequence[Event], request_id: str) -> list[Row]:
    # The request being stored is the one that produced them, whatever `request_id` they carry.
    return [
        (e.id, request_id, e.relay, e.type, e.source, e.subject, e.time, dumps_data(e.data))
        for e in events
    ]


def _insert_events(
    conn: sqlite3.Connection, event_rows: list[Row], delivery_rows: list[deliveries_sql.NewRow]
) -> IngestResult:
    """Insert the events, then the deliveries of those that are new (duplicates get none)."""
    if not event_rows:
        return IngestResult(accepted=0, duplicates=0)
    last_seq = deliveries_sql.last_event_seq(conn)
    # rowcount sums the rows executemany actually inserted; conflicting ids insert nothing.
    accepted: int = conn.executemany(INSERT_EVENT, event_rows).rowcount
    routed = deliveries_sql.insert_deliveries(conn, delivery_rows, last_seq) if accepted else 0
    return IngestResult(accepted=accepted, duplicates=len(event_rows) - accepted, deliveries=routed)
