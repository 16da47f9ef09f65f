"""The PostgreSQL engine of the store contract, for several processes on one database.

Writes go through one group-committing connection (`committer`), reads and claims through a pool
(asyncpg: bench/pg_drivers.py measured it against psycopg 3). Every write that makes deliveries
due, or changes hooks, sends NOTIFY with its commit; `subscribe` LISTENs on a connection of its
own (`listener`), which reconnects after the database restarts.

    store = PostgresStore("postgresql://relayhook@db.internal:5432/relayhook")
    await store.open()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import asyncpg

from relayhook.core import pacing
from relayhook.core.erasure import Found, Subject
from relayhook.core.events import Event, format_time
from relayhook.core.people import Account, ApiKey, AuditEntry
from relayhook.core.records import (
    DELIVERY_STATUSES,
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
from relayhook.store import rows as records
from relayhook.store.base import (
    BacklogEntry,
    ConsoleSession,
    Cutoffs,
    PruneResult,
    Resealed,
    StoredHook,
    StoredRelay,
    StoreError,
    StoreUnavailableError,
    Topic,
    check_claim,
    check_events,
    check_finish,
    check_new_deliveries,
    check_replay,
    check_test,
    finished_at,
)
from relayhook.store.migrations import Migration
from relayhook.store.postgres import browse, schema
from relayhook.store.postgres import config as config_sql
from relayhook.store.postgres import deliveries as sql
from relayhook.store.postgres import erasure as erasure_sql
from relayhook.store.postgres import outcomes as outcomes_sql
from relayhook.store.postgres import people as people_sql
from relayhook.store.postgres import problems as problems_sql
from relayhook.store.postgres import requests as requests_sql
from relayhook.store.postgres import samples as samples_sql
from relayhook.store.postgres import sessions as sessions_sql
from relayhook.store.postgres import streaks as streaks_sql
from relayhook.store.postgres.committer import (
    CHANNEL,
    CONNECTION_ERRORS,
    GroupCommitter,
    store_error,
)
from relayhook.store.postgres.listener import Listener
from relayhook.store.text import from_column, to_column

if TYPE_CHECKING:
    from relayhook.core.hooks import RateLimitSpec
    from relayhook.store.base import Store

T = TypeVar("T")

READERS = 8
CONNECT_TIMEOUT = 3.0  # seconds: a database that is down is answered fast (503), not waited for
SERVER_SETTINGS = {"application_name": "relayhook", "synchronous_commit": "on"}
DB_ERRORS = (asyncpg.PostgresError, *CONNECTION_ERRORS)

RECORD_AUTH_FAILURE = """
INSERT INTO auth_failures (relay, count, last_at) VALUES ($1, 1, $2)
ON CONFLICT (relay) DO UPDATE
    SET count = auth_failures.count + 1, last_at = greatest(auth_failures.last_at, excluded.last_at)
"""


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return (
        f"postgresql://{parts.username + '@' if parts.username else ''}{host}"
        + (f":{parts.port}" if parts.port else "")
        + parts.path
    )


class PostgresStore:
    """`Store` on one PostgreSQL database. `commits` counts write transactions."""

    def __init__(self, url: str, *, max_batch: int = 256, readers: int = READERS) -> None:
        self.url = url
        self.where = describe(url)
        self.readers = readers
        self._committer = GroupCommitter(self._connect, max_batch=max_batch)
        self._pool: asyncpg.Pool | None = None
        self._listener = Listener(self._connect)
        self._opened = False
        self.schema_version = schema.LATEST
        self.migrations_applied: Sequence[Migration] = ()

    @property
    def commits(self) -> int:
        return self._committer.commits

    # -- lifecycle

    async def open(self, *, migrate: bool = True) -> None:
        if self._opened:
            raise StoreError("a store is opened once")
        self._opened = True
        try:
            conn = await self._connect()
        except DB_ERRORS as exc:
            raise StoreError(f"cannot open {self.where}: {exc}") from exc
        try:
            self.migrations_applied = await schema.migrate(conn, self.where, apply=migrate)
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.readers,
                timeout=CONNECT_TIMEOUT,
                server_settings=SERVER_SETTINGS,
            )
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, DB_ERRORS):
                raise StoreError(f"cannot open {self.where}: {exc}") from exc
            raise
        self._committer.start(conn)

    async def close(self) -> None:
        await self._listener.stop()
        await self._committer.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except (TimeoutError, *DB_ERRORS):
                pool.terminate()

    def subscribe(self, callback: Callable[[Topic], None]) -> None:
        self._listener.add(callback)

    # -- writes: requests and events

    async def ingest(
        self,
        request: RequestRecord,
        events: Sequence[Event],
        deliveries: Sequence[NewDelivery] = (),
        outcomes: Sequence[HookOutcome] = (),
    ) -> IngestResult:
        check_events(request.status, events)
        check_new_deliveries(deliveries, events)
        params = requests_sql.ingest_params(request, events, deliveries)
        outcome_rows = outcomes_sql.outcome_rows(outcomes)

        async def job(conn: asyncpg.Connection) -> IngestResult:
            row = await conn.fetchrow(requests_sql.INGEST, *params)
            result = requests_sql.ingest_result(row, len(events))
            if not result.already_stored:  # outcomes only with the request they explain
                await outcomes_sql.insert(conn, outcome_rows)
            return result

        return await self._write(job, "deliveries" if deliveries else None)

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
        check_new_deliveries(deliveries, events)
        params = (
            request_id,
            *requests_sql.event_arrays(events),
            *requests_sql.delivery_arrays(deliveries),
        )
        outcome_rows = outcomes_sql.outcome_rows(outcomes)

        async def job(conn: asyncpg.Connection) -> IngestResult:
            result = await requests_sql.remap(conn, request_id, events, status, error, params)
            await outcomes_sql.insert(conn, outcome_rows)
            return result

        return await self._write(job, "deliveries" if deliveries else None)

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
            lambda conn: outcomes_sql.rerun(conn, request_id, deliveries, rows, now),
            "deliveries" if deliveries else None,
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
        now = time.time()
        await self._write(
            lambda conn: requests_sql.record_test(
                conn, request, event, delivery, attempt, outcome, now
            )
        )

    async def record_auth_failure(self, relay: str, at: str) -> None:
        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute(RECORD_AUTH_FAILURE, relay, at)

        await self._write(job)

    # -- reads: requests and events

    async def auth_failures(self) -> dict[str, tuple[int, str]]:
        rows = await self._fetch(
            'SELECT relay, count, last_at FROM auth_failures ORDER BY relay COLLATE "C"'
        )
        return {relay: (count, last_at) for relay, count, last_at in rows}

    async def get_request(self, request_id: str) -> RequestRecord | None:
        found = await self._read(
            lambda conn: requests_sql.with_event_ids(
                conn, f"SELECT {records.REQUEST_COLUMNS} FROM requests WHERE id = $1", [request_id]
            )
        )
        return found[0] if found else None

    async def list_requests(
        self,
        *,
        relay: str | None = None,
        status: RequestStatus | None = None,
        limit: int = 50,
        before: str | None = None,
        text: str | None = None,
    ) -> list[RequestRecord]:
        filters: list[tuple[str, object]] = [("relay", relay), ("status", status)]
        query, params = _page(
            "requests", records.REQUEST_COLUMNS, filters, before, limit, text=text
        )
        return await self._read(lambda conn: requests_sql.with_event_ids(conn, query, params))

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
            ("relay", relay),
            ("type", to_column(type)),
            ("subject", to_column(subject)),
            ("request_id", request_id),
        ]
        rows = await self._fetch(
            *_page("events", records.EVENT_COLUMNS, filters, before and to_column(before), limit)
        )
        return [records.to_event(tuple(row)) for row in rows]

    async def count_events(self, *, relay: str | None = None, source: str | None = None) -> int:
        clause, params = _where([("relay", relay), ("source", to_column(source))])
        rows = await self._fetch(f"SELECT count(*) FROM events {clause}", params)
        return int(rows[0][0])

    async def event_type_counts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT type, count(*) FROM events GROUP BY type")
        return {str(row[0]): int(row[1]) for row in rows}

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
        return await self._transact(
            lambda conn: sql.claim_due(
                conn,
                hook=hook,
                now=now,
                limit=limit,
                lease_until=now + lease_seconds,
                owner=owner,
                ordered=ordered,
                concurrency=concurrency,
                answered=list(answered),
            )
        )

    async def pacing_wait(self, hook: str, rate_limit: RateLimitSpec | None, now: float) -> float:
        state = await self._read(lambda conn: sql.pacing_state(conn, hook))
        return pacing.pacing_wait(rate_limit, state, now)

    async def reserve_sends(
        self, hook: str, rate_limit: RateLimitSpec | None, now: float, count: int
    ) -> list[float]:
        if count <= 0:
            return []
        return await self._transact(
            lambda conn: sql.reserve_sends(conn, hook, rate_limit, now, count)
        )

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
        now = time.time()
        notify: Topic | None = "deliveries" if outcome.status in ("failed", "paused") else None
        if outcome.status == "dead" and disable_after:
            notify = "config"  # it may switch the hook off

        async def job(conn: asyncpg.Connection) -> bool:
            done = await sql.finish(
                conn, delivery_id, owner=owner, outcome=outcome, attempt=attempt, now=now
            )
            if done:
                at = finished_at(attempt, lambda: now)
                await problems_sql.note(conn, delivery_id, outcome, attempt, at)
                await streaks_sql.note(conn, delivery_id, outcome, attempt, at, disable_after)
            return done

        # Beside the group commit, not behind it: the exchange is over, and until this
        # commits a crash of this process sends the delivery again (the queue behind a busy
        # writer held hundreds of answered deliveries). Parallel commits share WAL flushes.
        return await self._direct(job, notify)

    async def list_problems(
        self,
        *,
        hook: str | None = None,
        statuses: Sequence[ProblemStatus] = ("open", "acknowledged"),
        limit: int = 50,
        relay: str | None = None,
    ) -> list[Problem]:
        return await self._read(
            lambda conn: problems_sql.list_problems(conn, hook, statuses, limit, relay)
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
        await self._read(erasure_sql.wipe)
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
        return await self._write(
            lambda conn: problems_sql.replay(conn, problem_id, now, limit), "deliveries"
        )

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
            lambda conn: streaks_sql.switch_hook(conn, hook, active, reason, at), "config"
        )

    async def hook_states(self) -> dict[str, tuple[bool, str | None, float]]:
        rows = await self._fetch(
            'SELECT hook, active, reason, at FROM hook_states ORDER BY hook COLLATE "C"'
        )
        return {hook: (active, from_column(reason), at) for hook, active, reason, at in rows}

    async def save_hooks(self, source: str, specs: Mapping[str, dict[str, Any]], at: float) -> None:
        await self._write(lambda conn: config_sql.save_hooks(conn, source, specs, at), "config")

    async def list_hooks(self) -> list[StoredHook]:
        return await self._read(config_sql.list_hooks)

    # -- live configuration (NOTIFY 'config' with every change)

    async def config_version(self) -> int:
        return await self._read(config_sql.config_version)

    async def put_hook(self, hook: StoredHook, *, create: bool) -> bool:
        return await self._write(lambda conn: config_sql.put_hook(conn, hook, create), "config")

    async def delete_hook(self, name: str, *, at: float) -> int | None:
        return await self._write(lambda conn: config_sql.delete_hook(conn, name, at), "config")

    async def list_relays(self) -> list[StoredRelay]:
        return await self._read(config_sql.list_relays)

    async def create_relay(self, relay: StoredRelay) -> bool:
        return await self._write(lambda conn: config_sql.create_relay(conn, relay), "config")

    async def update_relay(self, name: str, *, sealed: str, at: float) -> bool:
        return await self._write(
            lambda conn: config_sql.update_relay(conn, name, sealed, at), "config"
        )

    async def set_relay_expect(self, name: str, expect: str | None, *, at: float) -> bool:
        return await self._write(
            lambda conn: config_sql.set_relay_expect(conn, name, expect, at), "config"
        )

    async def delete_relay(self, name: str) -> bool:
        return await self._write(lambda conn: config_sql.delete_relay(conn, name), "config")

    async def reseal(self, changes: Sequence[Resealed], *, bump: bool = False) -> int:
        return await self._write(
            lambda conn: config_sql.reseal(conn, changes, bump), "config" if bump else None
        )

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[Attempt]] | None:
        async def fetch(conn: asyncpg.Connection) -> tuple[Delivery, list[Attempt]] | None:
            row = await conn.fetchrow(
                f"SELECT {sql.WITH_EVENT} FROM deliveries AS d JOIN events AS e"
                " ON e.id = d.event_id WHERE d.id = $1",
                delivery_id,
            )
            if row is None:
                return None
            attempts = await conn.fetch(
                f"SELECT {records.ATTEMPT_COLUMNS} FROM attempts"
                " WHERE delivery_id = $1 ORDER BY number",
                delivery_id,
            )
            return (
                records.to_delivery_with_event(tuple(row)),
                [records.to_attempt(tuple(a)) for a in attempts],
            )

        return await self._read(fetch)

    async def list_deliveries(
        self,
        *,
        hook: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Delivery]:
        filters = [("hook", hook), ("status", status), ("event_id", to_column(event_id))]
        rows = await self._fetch(
            *_page("deliveries", records.DELIVERY_COLUMNS, filters, before, limit)
        )
        return [records.to_delivery(tuple(row)) for row in rows]

    async def count_deliveries(
        self, *, hook: str | None = None, status: DeliveryStatus | None = None
    ) -> dict[str, int]:
        clause, params = _where([("hook", hook), ("status", status), ("test", False)])
        counts: dict[str, int] = dict.fromkeys(
            DELIVERY_STATUSES if status is None else (status,), 0
        )
        rows = await self._fetch(
            f"SELECT status, count(*) FROM deliveries {clause} GROUP BY status", params
        )
        counts.update((found, count) for found, count in rows)
        return counts

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
            lambda conn: sql.replay(
                conn,
                now=now,
                delivery_id=delivery_id,
                hook=hook,
                statuses=statuses,
                since=since,
                limit=limit,
            ),
            "deliveries",
        )

    # -- browsing: history, activity, the console's values

    async def find_deliveries(
        self, where: DeliveryFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Delivery]:
        return await self._read(lambda conn: browse.find_deliveries(conn, where, limit, before))

    async def count_found_deliveries(self, where: DeliveryFilter) -> int:
        return await self._read(lambda conn: browse.count_found_deliveries(conn, where))

    async def request_activity(self, *, since: float, bucket_seconds: float) -> list[ActivityRow]:
        since_text = text_time(since)
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
        async def change(conn: asyncpg.Connection) -> int:
            await browse.set_admin_value(conn, name, value, at, True)
            return await sessions_sql.revoke_all(conn, account, keep)

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
        return await browse.prune(self._write, cutoffs, batch, text_time)

    async def backlog(self) -> list[BacklogEntry]:
        return await self._read(browse.backlog)

    async def probe_write(self) -> None:
        async def nothing(conn: asyncpg.Connection) -> None:
            return None

        await self._write(nothing)

    async def schema_current(self) -> bool:
        return await self._read(schema.current_version) == schema.LATEST

    async def backup(self, target: Path) -> None:
        raise StoreError(
            f"relayhook backup copies SQLite files; back up {self.where} with"
            " pg_dump (or your database's own backups)"
        )

    # -- connections and running SQL

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.url, timeout=CONNECT_TIMEOUT, server_settings=SERVER_SETTINGS
        )
        return conn

    async def _write(
        self, fn: Callable[[asyncpg.Connection], Awaitable[T]], notify: Topic | None = None
    ) -> T:
        return await self._committer.submit(fn, notify)

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreUnavailableError(
                "the store is closed" if self._opened else "the store is not open"
            )
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as proxy:
                # A pooled connection stands in for a connection (asyncpg's proxy).
                return await fn(cast(asyncpg.Connection, proxy))
        except DB_ERRORS as exc:
            raise store_error(exc) from exc

    async def _fetch(self, query: str, params: Sequence[object] = ()) -> list[asyncpg.Record]:
        return await self._read(lambda conn: conn.fetch(query, *params))

    async def _direct(
        self, fn: Callable[[asyncpg.Connection], Awaitable[T]], notify: Topic | None = None
    ) -> T:
        """`fn` in a transaction of its own on a pooled connection, committed durably, beside
        the group commit rather than behind it."""

        async def run(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                result = await fn(conn)
                if notify is not None:
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, notify)
                return result

        return await self._read(run)

    async def _transact(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`fn` in a transaction of its own on a pooled connection, committed without waiting
        for the WAL flush (claims and pacing: see deliveries)."""

        async def run(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                return await fn(conn)

        return await self._read(run)


# -- rows and queries


def text_time(seconds: float | None) -> str:
    """A time as requests store it (RFC 3339 text sorts as time); "" for never."""
    return "" if seconds is None else format_time(datetime.fromtimestamp(seconds, UTC))


Query = tuple[str, list[object]]


def _where(filters: Sequence[tuple[str, object]], params: list[object] | None = None) -> Query:
    """`WHERE column = $n AND ...` for the filters given (None: no filter)."""
    params = [] if params is None else params
    conditions = []
    for column, value in filters:
        if value is not None:
            params.append(value)
            conditions.append(f"{column} = ${len(params)}")
    return ("WHERE " + " AND ".join(conditions)) if conditions else "", params


def _page(
    table: str,
    columns: str,
    filters: Sequence[tuple[str, object]],
    before: str | None,
    limit: int,
    *,
    text: str | None = None,
) -> Query:
    """Newest first; `before` is the id of the row to page from (exclusive); `text`: requests
    whose body holds it (see browse.body_pattern)."""
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    clause, params = _where(filters)
    if text:
        params.append(browse.body_pattern(text))
        found = f"lower(encode(body, 'escape')) LIKE ${len(params)} ESCAPE '\\'"
        clause = f"{clause} AND {found}" if clause else f"WHERE {found}"
    if before is not None:
        params.append(before)
        seek = f"seq < (SELECT seq FROM {table} WHERE id = ${len(params)})"
        clause = f"{clause} AND {seek}" if clause else f"WHERE {seek}"
    params.append(limit)
    return f"SELECT {columns} FROM {table} {clause} ORDER BY seq DESC LIMIT ${len(params)}", params


if TYPE_CHECKING:  # mypy proves the engine implements every role of the contract
    _ENGINE: type[Store] = PostgresStore
