"""The SQLite engine of the store contract: one writer thread with group commit, pooled readers.

The threads are in `threads` (why one writer, and what group commit buys), the schema and its
migrations in `schema`, the SQL of deliveries in `deliveries`. This module holds the requests
and events, and the `SQLiteStore` that puts it all behind the `Store` contract.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from relayhook.core import pacing
from relayhook.core.erasure import Found, Subject
from relayhook.core.events import Event, format_time
from relayhook.core.people import Account, ApiKey, AuditEntry
from relayhook.core.records import (
    ActivityRow,
    Attempt,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    HookOutcome,
    IngestResult,
    NewDelivery,
    Outcome,
    Problem,
    ProblemStatus,
    RequestRecord,
    RequestStatus,
    Sample,
)
from relayhook.store.base import (
    BacklogEntry,
    ConsoleSession,
    Cutoffs,
    PruneResult,
    Resealed,
    StoredHook,
    StoredRelay,
    StoreError,
    Topic,
    check_claim,
    check_events,
    check_finish,
    check_replay,
    check_test,
    finished_at,
)
from relayhook.store.migrations import Migration
from relayhook.store.rows import (
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    REQUEST_COLUMNS,
    Row,
    event_rows,
    request_row,
    to_delivery,
    to_event,
)
from relayhook.store.sqlite import browse, schema
from relayhook.store.sqlite import config as config_sql
from relayhook.store.sqlite import deliveries as deliveries_sql
from relayhook.store.sqlite import erasure as erasure_sql
from relayhook.store.sqlite import ops as sqlite_ops
from relayhook.store.sqlite import outcomes as outcomes_sql
from relayhook.store.sqlite import people as people_sql
from relayhook.store.sqlite import problems as problems_sql
from relayhook.store.sqlite import requests as requests_sql
from relayhook.store.sqlite import samples as samples_sql
from relayhook.store.sqlite import sessions as sessions_sql
from relayhook.store.sqlite import streaks as streaks_sql
from relayhook.store.sqlite.requests import INSERT_REQUEST
from relayhook.store.sqlite.restore import hold_shared
from relayhook.store.sqlite.rows import page_query, where
from relayhook.store.sqlite.threads import GroupCommitWriter, ReaderPool
from relayhook.store.text import to_column

if TYPE_CHECKING:  # a type only: core.hooks loads Jinja, which the store needs not
    from relayhook.core.hooks import RateLimitSpec
    from relayhook.store.base import Store

SCHEMA_VERSION = schema.LATEST

T = TypeVar("T")

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
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 256,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_LEVELS:
            levels = ", ".join(SYNCHRONOUS_LEVELS)
            raise ValueError(f"synchronous must be one of {levels}, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self._writer = GroupCommitWriter(max_batch=max_batch)
        self._held: int | None = None  # the fd of the shared lock on the database file
        self.schema_version = schema.LATEST  # once open: what it holds, always the latest
        self.migrations_applied: Sequence[Migration] = ()  # by `open`
        self._readers = ReaderPool(self._connect_reader, READERS)

    @property
    def max_batch(self) -> int:
        return self._writer.max_batch

    @property
    def commits(self) -> int:
        return self._writer.commits

    # -- lifecycle

    async def open(self, *, migrate: bool = True) -> None:
        if self._writer.started:
            raise StoreError("a store is opened once")
        try:
            # Held while open: `relayhook restore` refuses to replace a store in use.
            self._held = await asyncio.to_thread(hold_shared, self.path)
            conn = await asyncio.to_thread(self._connect_writer, migrate)
        except (sqlite3.Error, OSError) as exc:
            self._release()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            self._release()
            raise
        self._writer.start(conn)

    async def close(self) -> None:
        await self._writer.stop()
        self._readers.close()
        self._release()

    def _release(self) -> None:
        if self._held is not None:
            os.close(self._held)
            self._held = None

    # -- writes: requests and events

    async def ingest(
        self,
        request: RequestRecord,
        events: Sequence[Event],
        deliveries: Sequence[NewDelivery] = (),
        outcomes: Sequence[HookOutcome] = (),
    ) -> IngestResult:
        check_events(request.status, events)
        request_values = request_row(request, events)
        event_values = event_rows(events, request.id)
        delivery_rows = deliveries_sql.delivery_rows(deliveries, events)
        outcome_rows = outcomes_sql.outcome_rows(outcomes)

        def job(conn: sqlite3.Connection) -> IngestResult:
            if conn.execute(INSERT_REQUEST, request_values).rowcount == 0:
                return IngestResult(accepted=0, duplicates=0, already_stored=True)
            outcomes_sql.insert(conn, outcome_rows)
            return _insert_events(conn, event_values, delivery_rows)

        return await self._write(job)

    async def remap(
        self,
        request_id: str,
        events: Sequence[Event],
        *,
        status: RequestStatus,
        error: str | None,
        deliveries: Sequence[NewDelivery] = (),
        outcomes: Sequence[HookOutcome] = (),
    ) -> IngestResult:
        check_events(status, events)
        event_values = event_rows(events, request_id)
        delivery_rows = deliveries_sql.delivery_rows(deliveries, events)
        outcome_rows = outcomes_sql.outcome_rows(outcomes)

        def job(conn: sqlite3.Connection) -> IngestResult:
            requests_sql.set_mapped(conn, request_id, status, error, events)
            outcomes_sql.insert(conn, outcome_rows)
            return _insert_events(conn, event_values, delivery_rows)

        return await self._write(job)

    async def request_outcomes(self, request_id: str) -> list[HookOutcome]:
        return await self._read(lambda conn: outcomes_sql.of_request(conn, request_id))

    async def hook_outcomes(
        self,
        hook: str,
        *,
        kinds: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        limit: int = 50,
    ) -> list[HookOutcome]:
        return await self._read(
            lambda conn: outcomes_sql.of_hook(conn, hook, kinds, exclude, limit)
        )

    async def rerun(
        self,
        request_id: str,
        deliveries: Sequence[NewDelivery],
        outcomes: Sequence[HookOutcome],
        *,
        now: float,
    ) -> tuple[int, int]:
        rows = outcomes_sql.outcome_rows(outcomes)
        return await self._write(
            lambda conn: outcomes_sql.rerun(conn, request_id, deliveries, rows, now)
        )

    async def record_test(
        self,
        request: RequestRecord,
        event: Event,
        delivery: NewDelivery,
        attempt: Attempt | None,
        outcome: Outcome,
    ) -> None:
        check_test(request, event, delivery, outcome)
        check_finish(delivery.id, outcome, attempt)
        request_values = request_row(request, [event])
        event_values = event_rows([event], request.id)[0]

        def job(conn: sqlite3.Connection) -> None:
            requests_sql.record_test(
                conn, request_values, event_values, delivery, event.relay, attempt, outcome
            )

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
        filters = [
            ("relay = ?", relay),
            ("status = ?", status),
            ("CAST(body AS TEXT) LIKE ? ESCAPE '\\'", pattern),
        ]
        sql, params = page_query("requests", REQUEST_COLUMNS, filters, before, limit)
        return await self._read(
            lambda conn: requests_sql.with_event_ids(conn, conn.execute(sql, params))
        )

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
            ("type = ?", to_column(type)),
            ("subject = ?", to_column(subject)),
            ("request_id = ?", request_id),
        ]
        sql, params = page_query(
            "events", EVENT_COLUMNS, filters, before and to_column(before), limit
        )
        return await self._read(lambda conn: [to_event(row) for row in conn.execute(sql, params)])

    async def count_events(self, *, relay: str | None = None, source: str | None = None) -> int:
        clause, params = where([("relay = ?", relay), ("source = ?", to_column(source))])
        sql = f"SELECT count(*) FROM events {clause}"
        count: int = await self._read(lambda conn: conn.execute(sql, params).fetchone()[0])
        return count

    async def event_type_counts(self) -> dict[str, int]:
        sql = "SELECT type, count(*) FROM events GROUP BY type"
        rows = await self._read(lambda conn: conn.execute(sql).fetchall())
        return {str(t): int(n) for t, n in rows}

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
        concurrency: int | None = None,
        answered: Collection[str] = (),
    ) -> list[Delivery]:
        check_claim(limit, lease_seconds)
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
                concurrency=concurrency,
                answered=tuple(answered),
            )
        )

    async def pacing_wait(self, hook: str, rate_limit: RateLimitSpec | None, now: float) -> float:
        state = await self._read(lambda conn: deliveries_sql.pacing_state(conn, hook))
        return pacing.pacing_wait(rate_limit, state, now)

    async def reserve_sends(
        self, hook: str, rate_limit: RateLimitSpec | None, now: float, count: int
    ) -> list[float]:
        if count <= 0:
            return []
        return await self._write(
            lambda conn: deliveries_sql.reserve_sends(conn, hook, rate_limit, now, count)
        )

    def subscribe(self, callback: Callable[[Topic], None]) -> None:
        """Nothing to listen to: a process learns of another's writes by polling."""

    async def finish(
        self,
        delivery_id: str,
        *,
        owner: str,
        outcome: Outcome,
        attempt: Attempt | None,
        disable_after: int = 0,
    ) -> bool:
        check_finish(delivery_id, outcome, attempt)

        def job(conn: sqlite3.Connection) -> bool:
            done = deliveries_sql.finish(
                conn, delivery_id, owner=owner, outcome=outcome, attempt=attempt
            )
            if done:
                at = finished_at(attempt, time.time)
                problems_sql.note(conn, delivery_id, outcome, attempt, at)
                streaks_sql.note(conn, delivery_id, outcome, attempt, at, disable_after)
            return done

        return await self._write(job)

    async def list_problems(
        self,
        *,
        hook: str | None = None,
        statuses: Sequence[ProblemStatus] = ("open", "acknowledged"),
        limit: int = 50,
        relay: str | None = None,
    ) -> list[Problem]:
        return await self._read(
            lambda conn: problems_sql.list_problems(conn, hook, tuple(statuses), limit, relay)
        )

    async def open_relay_problem(
        self, relay: str, signature: str, text: str, *, at: float, request: str | None = None
    ) -> bool:
        return await self._write(
            lambda conn: problems_sql.open_relay_problem(conn, relay, signature, text, request, at)
        )

    async def resolve_relay_problem(self, relay: str, signature: str, *, at: float) -> bool:
        return await self._write(
            lambda conn: problems_sql.resolve_relay_problem(conn, relay, signature, at)
        )

    async def erase_subject(self, subject: Subject) -> Found:
        found = await self._write(lambda conn: erasure_sql.erase(conn, subject))
        await asyncio.to_thread(erasure_sql.wipe, self.path)
        return found

    async def get_shapes(self, relay: str) -> dict[str, str]:
        return await self._read(lambda conn: problems_sql.get_shapes(conn, relay))

    async def save_shape(self, relay: str, event_type: str, shape: str, *, at: float) -> None:
        await self._write(lambda conn: problems_sql.save_shape(conn, relay, event_type, shape, at))

    async def get_problem(self, problem_id: str) -> Problem | None:
        return await self._read(lambda conn: problems_sql.get_problem(conn, problem_id))

    async def acknowledge_problem(self, problem_id: str, *, at: float) -> bool:
        return await self._write(lambda conn: problems_sql.acknowledge(conn, problem_id, at))

    async def mark_problem_notified(self, problem_id: str) -> bool:
        return await self._write(lambda conn: problems_sql.mark_notified(conn, problem_id))

    async def replay_problem(self, problem_id: str, *, now: float, limit: int = 500) -> int:
        return await self._write(lambda conn: problems_sql.replay(conn, problem_id, now, limit))

    async def save_sample(self, sample: Sample, *, replace: bool = False) -> bool:
        return await self._write(lambda conn: samples_sql.save(conn, sample, replace))

    async def get_sample(self, name: str) -> Sample | None:
        return await self._read(lambda conn: samples_sql.get(conn, name))

    async def list_samples(self) -> list[Sample]:
        return await self._read(samples_sql.list_all)

    async def delete_sample(self, name: str) -> bool:
        return await self._write(lambda conn: samples_sql.delete(conn, name))

    async def set_hook_active(self, hook: str, active: bool, reason: str | None, at: float) -> int:
        return await self._write(
            lambda conn: streaks_sql.switch_hook(conn, hook, active, reason, at)
        )

    async def hook_states(self) -> dict[str, tuple[bool, str | None, float]]:
        return await self._read(deliveries_sql.hook_states)

    async def save_hooks(self, source: str, specs: Mapping[str, dict[str, Any]], at: float) -> None:
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

    async def set_relay_expect(self, name: str, expect: str | None, *, at: float) -> bool:
        return await self._write(lambda conn: config_sql.set_relay_expect(conn, name, expect, at))

    async def delete_relay(self, name: str) -> bool:
        return await self._write(lambda conn: config_sql.delete_relay(conn, name))

    async def reseal(self, changes: Sequence[Resealed], *, bump: bool = False) -> int:
        return await self._write(lambda conn: config_sql.reseal(conn, changes, bump))

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
        filters = [
            ("hook = ?", hook),
            ("status = ?", status),
            ("event_id = ?", to_column(event_id)),
        ]
        sql, params = page_query("deliveries", DELIVERY_COLUMNS, filters, before, limit)
        return await self._read(
            lambda conn: [to_delivery(row) for row in conn.execute(sql, params)]
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
        check_replay(delivery_id, statuses, limit)
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
            lambda conn: browse.request_activity(conn, since_text, since, bucket_seconds)
        )

    async def delivery_activity(self, *, since: float, bucket_seconds: float) -> list[ActivityRow]:
        return await self._read(lambda conn: browse.delivery_activity(conn, since, bucket_seconds))

    async def get_admin_value(self, name: str) -> str | None:
        return await self._read(lambda conn: browse.get_admin_value(conn, name))

    async def set_admin_value(
        self, name: str, value: str, at: float, *, replace: bool = True
    ) -> bool:
        return await self._write(
            lambda conn: browse.set_admin_value(conn, name, value, at, replace)
        )

    async def change_secret(
        self, name: str, value: str, at: float, *, account: str, keep: str | None = None
    ) -> int:
        def change(conn: sqlite3.Connection) -> int:
            browse.set_admin_value(conn, name, value, at, True)
            return sessions_sql.revoke_all(conn, account, keep)

        return await self._write(change)

    # -- console sessions

    async def create_session(self, session: ConsoleSession, token_hash: str) -> None:
        await self._write(lambda conn: sessions_sql.create(conn, session, token_hash))

    async def find_session(self, token_hash: str, now: float) -> ConsoleSession | None:
        return await self._read(lambda conn: sessions_sql.find(conn, token_hash, now))

    async def touch_session(self, session_id: str, at: float) -> None:
        await self._write(lambda conn: sessions_sql.touch(conn, session_id, at))

    async def list_sessions(self, account: str | None, now: float) -> list[ConsoleSession]:
        return await self._read(lambda conn: sessions_sql.list_open(conn, account, now))

    async def revoke_session(self, session_id: str) -> bool:
        return await self._write(lambda conn: sessions_sql.revoke(conn, session_id))

    async def revoke_sessions(self, account: str, *, keep: str | None = None) -> int:
        return await self._write(lambda conn: sessions_sql.revoke_all(conn, account, keep))

    # -- people, API keys, the audit log

    async def save_account(
        self, account: Account, *, end_sessions: bool = False, keep: str | None = None
    ) -> int:
        return await self._write(
            lambda conn: people_sql.save_account(conn, account, end_sessions, keep)
        )

    async def get_account(self, account_id: str) -> Account | None:
        return await self._read(lambda conn: people_sql.get_account(conn, account_id))

    async def find_account(self, email: str) -> Account | None:
        return await self._read(lambda conn: people_sql.find_account(conn, email))

    async def list_accounts(self) -> list[Account]:
        return await self._read(people_sql.list_accounts)

    async def create_link(self, token_hash: str, account: str, expires_at: float) -> None:
        await self._write(
            lambda conn: people_sql.create_link(conn, token_hash, account, expires_at)
        )

    async def peek_link(self, token_hash: str, now: float) -> str | None:
        return await self._read(lambda conn: people_sql.peek_link(conn, token_hash, now))

    async def use_link(self, token_hash: str, now: float) -> str | None:
        return await self._write(lambda conn: people_sql.use_link(conn, token_hash, now))

    async def create_key(self, key: ApiKey, token_hash: str) -> None:
        await self._write(lambda conn: people_sql.create_key(conn, key, token_hash))

    async def find_key(self, token_hash: str) -> ApiKey | None:
        return await self._read(lambda conn: people_sql.find_key(conn, token_hash))

    async def list_keys(self) -> list[ApiKey]:
        return await self._read(people_sql.list_keys)

    async def revoke_key(self, key_id: str, at: float) -> bool:
        return await self._write(lambda conn: people_sql.revoke_key(conn, key_id, at))

    async def touch_key(self, key_id: str, at: float) -> None:
        await self._write(lambda conn: people_sql.touch_key(conn, key_id, at))

    async def append_audit(self, entry: AuditEntry) -> None:
        await self._write(lambda conn: people_sql.append_audit(conn, entry))

    async def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        return await self._read(
            lambda conn: people_sql.list_audit(conn, actor, action, target, since, before, limit)
        )

    async def prune_audit(self, before: float, *, batch: int = 500) -> int:
        return await self._write(lambda conn: people_sql.prune_audit(conn, before, batch))

    # -- operations

    async def prune(self, cutoffs: Cutoffs, *, batch: int = 500) -> PruneResult:
        result: PruneResult = await sqlite_ops.Pruner(cutoffs, batch).run(self._read, self._write)
        if result != PruneResult():
            await asyncio.to_thread(sqlite_ops.checkpoint, self.path)
        return result

    async def backlog(self) -> list[BacklogEntry]:
        return await self._read(sqlite_ops.backlog)

    async def probe_write(self) -> None:
        await self._write(lambda conn: None)

    async def schema_current(self) -> bool:
        version = await self._read(lambda conn: conn.execute("PRAGMA user_version").fetchone())
        return bool(version[0] == schema.LATEST)

    async def backup(self, target: Path) -> None:
        await asyncio.to_thread(sqlite_ops.backup, self._connect, Path(target))

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. Connections move between
        # threads (the opener, the writer, to_thread workers) but are never shared at once.
        return sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )

    def _connect_writer(self, migrate: bool) -> sqlite3.Connection:
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
            self.migrations_applied = schema.migrate(conn, self.path, apply=migrate)
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
        return await self._readers.read(fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer.submit(fn)


# -- rows (built in the caller's thread, so the writer thread only runs SQL)


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


if TYPE_CHECKING:  # mypy proves the engine implements every role of the contract
    _ENGINE: type[Store] = SQLiteStore
