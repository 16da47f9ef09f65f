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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import asyncpg

from relayhook import pacing
from relayhook.events import Event
from relayhook.store import records
from relayhook.store.base import (
    DELIVERY_STATUSES,
    Attempt,
    Delivery,
    DeliveryStatus,
    IngestResult,
    NewDelivery,
    Outcome,
    RequestRecord,
    RequestStatus,
    StoreError,
    Topic,
    check_claim,
    check_events,
    check_finish,
    check_new_deliveries,
    check_replay,
)
from relayhook.store.migrations import Migration
from relayhook.store.postgres import deliveries as sql
from relayhook.store.postgres import schema
from relayhook.store.postgres.committer import CONNECTION_ERRORS, GroupCommitter, store_error
from relayhook.store.postgres.listener import Listener
from relayhook.store.text import dumps, from_column, loads, to_column

if TYPE_CHECKING:
    from relayhook.hooks import RateLimitSpec

T = TypeVar("T")

READERS = 8
CONNECT_TIMEOUT = 3.0  # seconds: a database that is down is answered fast (503), not waited for
SERVER_SETTINGS = {"application_name": "relayhook", "synchronous_commit": "on"}
DB_ERRORS = (asyncpg.PostgresError, *CONNECTION_ERRORS)

NEW_EVENTS = """
new AS (
  INSERT INTO events (id, request_id, relay, type, source, subject, time, data)
  SELECT e.id, $1, e.relay, e.type, e.source, e.subject, e.time, e.data
  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
       WITH ORDINALITY AS e(id, relay, type, source, subject, time, data, n)
  ORDER BY e.n
  ON CONFLICT (id) DO NOTHING
  RETURNING id, relay
), routed AS (
  INSERT INTO deliveries (id, event_id, hook, relay, subject, status, due_at, created_at,
                          updated_at)
  SELECT d.id, d.event_id, d.hook, new.relay, d.subject, d.status, d.due_at, d.due_at, d.due_at
  FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::float8[])
       WITH ORDINALITY AS d(id, event_id, hook, subject, status, due_at, n)
  JOIN new ON new.id = d.event_id
  ORDER BY d.n
  ON CONFLICT (event_id, hook) DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM routed)
"""
# The request, its new events and their deliveries: one statement, one round trip per write.
INGEST = f"""
WITH request AS (
  INSERT INTO requests ({records.REQUEST_COLUMNS})
  VALUES ($1, $15, $16, $17, $18, $19, $20, $21, $22, $23)
), {NEW_EVENTS}"""
ADD_EVENTS = f"WITH {NEW_EVENTS}"
RECORD_AUTH_FAILURE = """
INSERT INTO auth_failures (relay, count, last_at) VALUES ($1, 1, $2)
ON CONFLICT (relay) DO UPDATE
    SET count = auth_failures.count + 1, last_at = greatest(auth_failures.last_at, excluded.last_at)
"""


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"postgresql://{parts.username + '@' if parts.username else ''}{host}" + (
        f":{parts.port}" if parts.port else "") + parts.path


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
                self.url, min_size=1, max_size=self.readers, timeout=CONNECT_TIMEOUT,
                server_settings=SERVER_SETTINGS)
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

    async def ingest(self, request: RequestRecord, events: Sequence[Event],
                     deliveries: Sequence[NewDelivery] = ()) -> IngestResult:
        check_events(request.status, events)
        check_new_deliveries(deliveries, events)
        row = records.request_row(request)
        params = (row[0], *_event_arrays(events), *_delivery_arrays(deliveries), *row[1:-1],
                  bool(row[-1]))

        async def job(conn: asyncpg.Connection) -> IngestResult:
            return _result(await conn.fetchrow(INGEST, *params), len(events))

        return await self._write(job, "deliveries" if deliveries else None)

    async def remap(self, request_id: str, events: Sequence[Event], *, status: RequestStatus,
                    error: str | None, deliveries: Sequence[NewDelivery] = ()) -> IngestResult:
        check_events(status, events)
        check_new_deliveries(deliveries, events)
        params = (request_id, *_event_arrays(events), *_delivery_arrays(deliveries))

        async def job(conn: asyncpg.Connection) -> IngestResult:
            update = "UPDATE requests SET status = $1, error = $2 WHERE id = $3"
            if await conn.execute(update, status, to_column(error), request_id) == "UPDATE 0":
                raise KeyError(request_id)
            return _result(await conn.fetchrow(ADD_EVENTS, *params), len(events))

        return await self._write(job, "deliveries" if deliveries else None)

    async def record_auth_failure(self, relay: str, at: str) -> None:
        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute(RECORD_AUTH_FAILURE, relay, at)

        await self._write(job)

    # -- reads: requests and events

    async def auth_failures(self) -> dict[str, tuple[int, str]]:
        rows = await self._fetch(
            'SELECT relay, count, last_at FROM auth_failures ORDER BY relay COLLATE "C"')
        return {relay: (count, last_at) for relay, count, last_at in rows}

    async def get_request(self, request_id: str) -> RequestRecord | None:
        found = await self._read(lambda conn: _requests(conn, (
            f"SELECT {records.REQUEST_COLUMNS} FROM requests WHERE id = $1", [request_id])))
        return found[0] if found else None

    async def list_requests(self, *, relay: str | None = None,
                            status: RequestStatus | None = None, limit: int = 50,
                            before: str | None = None) -> list[RequestRecord]:
        query = _page("requests", records.REQUEST_COLUMNS,
                      [("relay", relay), ("status", status)], before, limit)
        return await self._read(lambda conn: _requests(conn, query))

    async def list_events(self, *, relay: str | None = None, type: str | None = None,
                          subject: str | None = None, request_id: str | None = None,
                          limit: int = 50, before: str | None = None) -> list[Event]:
        filters = [("relay", relay), ("type", to_column(type)), ("subject", to_column(subject)),
                   ("request_id", request_id)]
        rows = await self._fetch(*_page("events", records.EVENT_COLUMNS, filters,
                                        before and to_column(before), limit))
        return [records.to_event(tuple(row)) for row in rows]

    async def count_events(self, *, relay: str | None = None, source: str | None = None) -> int:
        clause, params = _where([("relay", relay), ("source", to_column(source))])
        rows = await self._fetch(f"SELECT count(*) FROM events {clause}", params)
        return int(rows[0][0])

    # -- deliveries

    async def claim_due(self, *, hook: str, now: float, limit: int, lease_seconds: float,
                        owner: str, ordered: bool = False,
                        concurrency: int | None = None) -> list[Delivery]:
        check_claim(limit, lease_seconds)
        if limit == 0:
            return []
        return await self._transact(lambda conn: sql.claim_due(
            conn, hook=hook, now=now, limit=limit, lease_until=now + lease_seconds, owner=owner,
            ordered=ordered, concurrency=concurrency))

    async def pacing_wait(self, hook: str, rate_limit: RateLimitSpec | None, now: float) -> float:
        state = await self._read(lambda conn: sql.pacing_state(conn, hook))
        return pacing.pacing_wait(rate_limit, state, now)

    async def reserve_sends(self, hook: str, rate_limit: RateLimitSpec | None, now: float,
                            count: int) -> list[float]:
        if count <= 0:
            return []
        return await self._transact(
            lambda conn: sql.reserve_sends(conn, hook, rate_limit, now, count))

    async def finish(self, delivery_id: str, *, owner: str, outcome: Outcome,
                     attempt: Attempt | None) -> bool:
        check_finish(delivery_id, outcome, attempt)
        now = time.time()
        notify: Topic | None = "deliveries" if outcome.status in ("failed", "paused") else None
        return await self._write(lambda conn: sql.finish(
            conn, delivery_id, owner=owner, outcome=outcome, attempt=attempt, now=now), notify)

    async def set_hook_active(self, hook: str, active: bool, reason: str | None, at: float) -> int:
        return await self._write(
            lambda conn: sql.set_hook_active(conn, hook, active, reason, at), "config")

    async def hook_states(self) -> dict[str, tuple[bool, str | None, float]]:
        rows = await self._fetch(
            'SELECT hook, active, reason, at FROM hook_states ORDER BY hook COLLATE "C"')
        return {hook: (active, from_column(reason), at) for hook, active, reason, at in rows}

    async def save_hooks(self, source: str, specs: Mapping[str, dict[str, Any]],
                         at: float) -> None:
        rows = [(name, source, dumps(spec), at) for name, spec in specs.items()]

        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM hooks WHERE source = $1", source)
            await conn.executemany(
                "INSERT INTO hooks (name, source, spec, updated_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (name) DO UPDATE SET source = excluded.source,"
                " spec = excluded.spec, updated_at = excluded.updated_at", rows)

        await self._write(job, "config")

    async def list_hooks(self) -> list[tuple[str, str, dict[str, Any], float]]:
        rows = await self._fetch(
            'SELECT name, source, spec, updated_at FROM hooks ORDER BY name COLLATE "C"')
        return [(name, source, loads(spec), at) for name, source, spec, at in rows]

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[Attempt]] | None:
        async def fetch(conn: asyncpg.Connection) -> tuple[Delivery, list[Attempt]] | None:
            row = await conn.fetchrow(
                f"SELECT {sql.WITH_EVENT} FROM deliveries AS d JOIN events AS e"
                " ON e.id = d.event_id WHERE d.id = $1", delivery_id)
            if row is None:
                return None
            attempts = await conn.fetch(f"SELECT {records.ATTEMPT_COLUMNS} FROM attempts"
                                        " WHERE delivery_id = $1 ORDER BY number", delivery_id)
            return (records.to_delivery_with_event(tuple(row)),
                    [records.to_attempt(tuple(a)) for a in attempts])

        return await self._read(fetch)

    async def list_deliveries(self, *, hook: str | None = None,
                              status: DeliveryStatus | None = None, event_id: str | None = None,
                              limit: int = 50, before: str | None = None) -> list[Delivery]:
        filters = [("hook", hook), ("status", status), ("event_id", to_column(event_id))]
        rows = await self._fetch(*_page("deliveries", records.DELIVERY_COLUMNS, filters, before,
                                        limit))
        return [records.to_delivery(tuple(row)) for row in rows]

    async def count_deliveries(self, *, hook: str | None = None,
                               status: DeliveryStatus | None = None) -> dict[str, int]:
        clause, params = _where([("hook", hook), ("status", status)])
        counts: dict[str, int] = dict.fromkeys(
            DELIVERY_STATUSES if status is None else (status,), 0)
        rows = await self._fetch(
            f"SELECT status, count(*) FROM deliveries {clause} GROUP BY status", params)
        counts.update((found, count) for found, count in rows)
        return counts

    async def replay(self, *, now: float, delivery_id: str | None = None,
                     hook: str | None = None, statuses: Sequence[DeliveryStatus] = ("dead",),
                     since: float | None = None, limit: int = 500) -> int:
        check_replay(delivery_id, statuses, limit)
        if limit == 0:
            return 0
        return await self._write(lambda conn: sql.replay(
            conn, now=now, delivery_id=delivery_id, hook=hook, statuses=statuses, since=since,
            limit=limit), "deliveries")

    # -- connections and running SQL

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.url, timeout=CONNECT_TIMEOUT, server_settings=SERVER_SETTINGS)
        return conn

    async def _write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]],
                     notify: Topic | None = None) -> T:
        return await self._committer.submit(fn, notify)

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreError("the store is closed" if self._opened else "the store is not open")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as proxy:
                # A pooled connection stands in for a connection (asyncpg's proxy).
                return await fn(cast(asyncpg.Connection, proxy))
        except DB_ERRORS as exc:
            raise store_error(exc) from exc

    async def _fetch(self, query: str, params: Sequence[object] = ()) -> list[asyncpg.Record]:
        return await self._read(lambda conn: conn.fetch(query, *params))

    async def _transact(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`fn` in a transaction of its own on a pooled connection, committed without waiting
        for the WAL flush (claims and pacing: see deliveries)."""
        async def run(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                return await fn(conn)

        return await self._read(run)


# -- rows and queries


def _result(row: asyncpg.Record | None, given: int) -> IngestResult:
    assert row is not None  # the statement always returns one row of two counts
    accepted, routed = row
    return IngestResult(accepted, given - accepted, routed)


def _event_arrays(events: Sequence[Event]) -> list[list[Any]]:
    """The columns of the events as arrays for `unnest` (relay, then as the events table)."""
    return [[to_column(e.id) for e in events], [e.relay for e in events],
            [to_column(e.type) for e in events], [to_column(e.source) for e in events],
            [to_column(e.subject) for e in events], [e.time for e in events],
            [dumps(e.data) for e in events]]


def _delivery_arrays(deliveries: Sequence[NewDelivery]) -> list[list[Any]]:
    return [[d.id for d in deliveries], [to_column(d.event_id) for d in deliveries],
            [d.hook for d in deliveries], [to_column(d.subject) for d in deliveries],
            [d.status for d in deliveries], [float(d.due_at) for d in deliveries]]


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


def _page(table: str, columns: str, filters: Sequence[tuple[str, object]], before: str | None,
          limit: int) -> Query:
    """Newest first; `before` is the id of the row to page from (exclusive)."""
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    clause, params = _where(filters)
    if before is not None:
        params.append(before)
        seek = f"seq < (SELECT seq FROM {table} WHERE id = ${len(params)})"
        clause = f"{clause} AND {seek}" if clause else f"WHERE {seek}"
    params.append(limit)
    return f"SELECT {columns} FROM {table} {clause} ORDER BY seq DESC LIMIT ${len(params)}", params


async def _requests(conn: asyncpg.Connection, query: Query) -> list[RequestRecord]:
    """Request records, their event ids fetched in one query for the whole page."""
    rows = await conn.fetch(query[0], *query[1])
    event_ids: dict[str, list[str]] = {}
    if rows:
        found = await conn.fetch("SELECT request_id, id FROM events WHERE request_id = ANY($1)"
                                 " ORDER BY seq", [row[0] for row in rows])
        for request_id, event_id in found:
            event_ids.setdefault(request_id, []).append(from_column(event_id))
    return [records.to_request(tuple(row), tuple(event_ids.get(row[0], ()))) for row in rows]
