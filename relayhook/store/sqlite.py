"""The SQLite engine of the store contract: one writer thread with group commit, pooled readers.

Writes are pure `fn(conn)` jobs handed to a single thread that owns the only write connection (as
in datasette). The thread runs every job already queued in one transaction, each job in its own
savepoint, so a burst of webhooks costs one fsync rather than one each, and one bad job is undone
alone. Callers hear back only after COMMIT returned: that is what lets the HTTP layer acknowledge
the provider as soon as `ingest` returns. Reads use their own connections in worker threads; WAL
lets them run while a write transaction is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from relayhook.events import Event
from relayhook.store.base import IngestResult, RequestRecord, RequestStatus, StoreError

T = TypeVar("T")

SCHEMA_VERSION = 1
SYNCHRONOUS_LEVELS = ("NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_SECONDS = 5.0  # another process (the CLI) may hold the write lock for a moment
READERS = 4

# Version 1. `seq` orders rows ("newest first" = descending seq) and is what `before` pages on;
# AUTOINCREMENT so a seq is never reused, even after the newest rows are deleted.
SCHEMA = """
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
"""

REQUEST_COLUMNS = "id, relay, received_at, method, query, headers, body, status, error, truncated"
EVENT_COLUMNS = "id, source, type, subject, time, data, relay, request_id"
INSERT_REQUEST = f"INSERT INTO requests ({REQUEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_EVENT = (
    "INSERT INTO events (id, request_id, relay, type, source, subject, time, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
RECORD_AUTH_FAILURE = (
    "INSERT INTO auth_failures (relay, count, last_at) VALUES (?, 1, ?)"
    " ON CONFLICT (relay) DO UPDATE SET count = count + 1, last_at = max(last_at, excluded.last_at)"
)

Row = tuple[Any, ...]
Filters = Sequence[tuple[str, object]]


class SQLiteStore:
    """`Store` on one SQLite file.

    `synchronous` is SQLite's durability level for commits (FULL: a commit survives power loss);
    `max_batch` caps how many jobs share one transaction. `commits` counts write transactions.
    """

    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", max_batch: int = 256
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_LEVELS:
            levels = ", ".join(SYNCHRONOUS_LEVELS)
            raise ValueError(f"synchronous must be one of {levels}, not {synchronous!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch
        self.commits = 0
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()  # orders submissions against close()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._readers = _Readers(self._connect_reader, READERS)

    # -- lifecycle

    async def open(self) -> None:
        if self._thread is not None or self._closed:
            raise StoreError("a store is opened once")
        try:
            conn = await asyncio.to_thread(self._connect_writer)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        thread = threading.Thread(
            target=self._run_writer, args=(conn,), name="relayhook-sqlite-writer", daemon=True
        )
        with self._lock:
            self._thread = thread
            thread.start()

    async def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._closed = True
            if thread is not None:
                self._jobs.put(None)  # queued behind every pending job, so those still commit
        if thread is not None:
            await asyncio.to_thread(thread.join)
        self._readers.close()

    # -- writes

    async def ingest(self, request: RequestRecord, events: Sequence[Event]) -> IngestResult:
        _check_events(request.status, events)
        request_row, event_rows = _request_row(request), _event_rows(events, request.id)

        def job(conn: sqlite3.Connection) -> IngestResult:
            conn.execute(INSERT_REQUEST, request_row)
            return _insert_events(conn, event_rows)

        return await self._write(job)

    async def remap(
        self,
        request_id: str,
        events: Sequence[Event],
        *,
        status: RequestStatus,
        error: str | None,
    ) -> IngestResult:
        _check_events(status, events)
        event_rows = _event_rows(events, request_id)

        def job(conn: sqlite3.Connection) -> IngestResult:
            update = "UPDATE requests SET status = ?, error = ? WHERE id = ?"
            if conn.execute(update, (status, error, request_id)).rowcount == 0:
                raise KeyError(request_id)
            return _insert_events(conn, event_rows)

        return await self._write(job)

    async def record_auth_failure(self, relay: str, at: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(RECORD_AUTH_FAILURE, (relay, at))

        await self._write(job)

    # -- reads

    async def auth_failures(self) -> dict[str, tuple[int, str]]:
        def fetch(conn: sqlite3.Connection) -> dict[str, tuple[int, str]]:
            rows = conn.execute("SELECT relay, count, last_at FROM auth_failures ORDER BY relay")
            return {relay: (count, last_at) for relay, count, last_at in rows}

        return await self._read(fetch)

    async def get_request(self, request_id: str) -> RequestRecord | None:
        def fetch(conn: sqlite3.Connection) -> RequestRecord | None:
            sql = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?"
            records = _with_event_ids(conn, conn.execute(sql, (request_id,)).fetchall())
            return records[0] if records else None

        return await self._read(fetch)

    async def list_requests(
        self,
        *,
        relay: str | None = None,
        status: RequestStatus | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[RequestRecord]:
        filters = [("relay = ?", relay), ("status = ?", status)]
        sql, params = _page_query("requests", REQUEST_COLUMNS, filters, before, limit)
        return await self._read(lambda conn: _with_event_ids(conn, conn.execute(sql, params)))

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
        sql, params = _page_query("events", EVENT_COLUMNS, filters, before, limit)
        return await self._read(lambda conn: [_event(row) for row in conn.execute(sql, params)])

    async def count_events(self, *, relay: str | None = None, source: str | None = None) -> int:
        where, params = _where([("relay = ?", relay), ("source = ?", source)])
        sql = f"SELECT count(*) FROM events {where}"
        count: int = await self._read(lambda conn: conn.execute(sql, params).fetchone()[0])
        return count

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. Connections move between
        # threads (the opener, the writer, to_thread workers) but are never shared at once.
        return sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )

    def _connect_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._thread is None:
                raise StoreError("the store is closed" if self._closed else "the store is not open")
            self._jobs.put(_Job(fn, future, loop))
        return await future

    def _run_writer(self, conn: sqlite3.Connection) -> None:
        batch: list[_Job] = []
        try:
            stop = False
            while not stop:
                batch, stop = self._take_batch()
                if batch:
                    self._commit_batch(conn, batch)
                batch = []
        finally:
            conn.close()
            self._refuse_pending(batch)

    def _refuse_pending(self, batch: list[_Job]) -> None:
        """Answer the jobs the writer will never run. Only a crash of the writer leaves any
        (`batch` is the one it was on); without this their callers would wait forever."""
        with self._lock:
            self._thread, self._closed = None, True
            pending: list[_Job | None] = [*batch]
            with contextlib.suppress(queue.Empty):
                while True:
                    pending.append(self._jobs.get_nowait())
        for job in pending:
            if job is not None:  # a job answered already ignores this (see _resolve)
                job.settle(None, StoreError("the store's writer has stopped"))

    def _take_batch(self) -> tuple[list[_Job], bool]:
        """Wait for one job, then take those already queued: (batch, whether to stop after it)."""
        first = self._jobs.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = [_run_in_savepoint(conn, job.fn) for job in batch]
            conn.execute("COMMIT")
        except Exception as exc:
            # BEGIN or COMMIT failed, or SQLite dropped the whole transaction: nothing was kept.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for job in batch:
                job.settle(None, _store_error(exc))
            return
        self.commits += 1
        for job, (result, error) in zip(batch, outcomes, strict=True):
            job.settle(result, error)


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop

    def settle(self, result: Any, error: BaseException | None) -> None:
        """Answer the caller on its own event loop (called from the writer thread)."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            self.loop.call_soon_threadsafe(_resolve, self.future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled (which does not undo a committed write)
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _run_in_savepoint(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
) -> tuple[Any, BaseException | None]:
    """Run one job so that its failure undoes only its own changes: (result, error)."""
    conn.execute("SAVEPOINT job")
    try:
        result = fn(conn)
    except Exception as exc:
        # If SQLite already rolled back the whole transaction, this raises and the batch fails.
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        # KeyError is part of the contract (remap of an unknown request); the rest is storage.
        return None, exc if isinstance(exc, KeyError) else _store_error(exc)
    conn.execute("RELEASE job")
    return result, None


def _store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    error = StoreError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this relayhook's"
            f" ({SCHEMA_VERSION}): upgrade relayhook"
        )
    if version < SCHEMA_VERSION:
        conn.executescript(
            f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )


class _Readers:
    """Up to `size` read connections, created on first need, each used by one thread at a time."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[sqlite3.Connection] = []
        self._created = 0
        self._closed = False
        self._changed = threading.Condition()

    def acquire(self) -> sqlite3.Connection:
        with self._changed:
            while not self._idle and self._created >= self._size and not self._closed:
                self._changed.wait()
            if self._closed:
                raise StoreError("the store is closed")
            if self._idle:
                return self._idle.pop()
            self._created += 1
        try:
            return self._connect()
        except BaseException:
            self._forget()
            raise

    def release(self, conn: sqlite3.Connection) -> None:
        with self._changed:
            if not self._closed:
                self._idle.append(conn)
                self._changed.notify()
                return
        self._forget()
        conn.close()  # returned after close(): it was in use when the others were closed

    def close(self) -> None:
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._created -= len(idle)
            self._changed.notify_all()
        for conn in idle:
            conn.close()

    def _forget(self) -> None:
        with self._changed:
            self._created -= 1
            self._changed.notify()

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one read transaction, so its queries all see the same snapshot."""
        try:
            with self.connection() as conn:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc


# -- rows (built in the caller's thread, so the writer thread only runs SQL)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _check_events(status: RequestStatus, events: Sequence[Event]) -> None:
    if status == "rejected" and events:
        raise ValueError("a rejected request comes with no events")


def _request_row(request: RequestRecord) -> Row:
    return (
        request.id,
        request.relay,
        request.received_at,
        request.method,
        request.query,
        _dumps([[name, value] for name, value in request.headers]),
        bytes(request.body),
        request.status,
        request.error,
        int(request.truncated),
    )


def _event_rows(events: Sequence[Event], request_id: str) -> list[Row]:
    # The request being stored is the one that produced them, whatever `request_id` they carry.
    return [
        (e.id, request_id, e.relay, e.type, e.source, e.subject, e.time, _dumps(e.data))
        for e in events
    ]


def _insert_events(conn: sqlite3.Connection, rows: list[Row]) -> IngestResult:
    # rowcount sums the rows executemany actually inserted; conflicting ids insert nothing.
    accepted = conn.executemany(INSERT_EVENT, rows).rowcount if rows else 0
    return IngestResult(accepted=accepted, duplicates=len(rows) - accepted)


def _where(filters: Filters) -> tuple[str, list[object]]:
    """`WHERE ... AND ...` from (condition with one `?`, value) pairs; a None value is no filter."""
    given = [(condition, value) for condition, value in filters if value is not None]
    conditions = " AND ".join(condition for condition, _ in given)
    return (f"WHERE {conditions}" if conditions else ""), [value for _, value in given]


def _page_query(
    table: str, columns: str, filters: Filters, before: str | None, limit: int
) -> tuple[str, list[object]]:
    """Newest first; `before` is the id of the row to page from (exclusive)."""
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    if before is not None:
        # An unknown `before` id compares with NULL: an empty page, not an error.
        filters = [*filters, (f"seq < (SELECT seq FROM {table} WHERE id = ?)", before)]
    where, params = _where(filters)
    return f"SELECT {columns} FROM {table} {where} ORDER BY seq DESC LIMIT ?", [*params, limit]


def _with_event_ids(conn: sqlite3.Connection, rows: Iterable[Row]) -> list[RequestRecord]:
    """Request records for `rows`, their event ids fetched in one query for the whole page."""
    page = list(rows)
    # One JSON array parameter rather than one `?` per request: no limit on the page size.
    sql = (
        "SELECT request_id, id FROM events"
        " WHERE request_id IN (SELECT value FROM json_each(?)) ORDER BY seq"
    )
    event_ids: dict[str, list[str]] = {}
    if page:
        for request_id, event_id in conn.execute(sql, (_dumps([row[0] for row in page]),)):
            event_ids.setdefault(request_id, []).append(event_id)
    return [_request(row, tuple(event_ids.get(row[0], ()))) for row in page]


def _request(row: Row, event_ids: tuple[str, ...]) -> RequestRecord:
    id_, relay, received_at, method, query, headers, body, status, error, truncated = row
    return RequestRecord(
        id=id_,
        relay=relay,
        received_at=received_at,
        method=method,
        query=query,
        headers=tuple((name, value) for name, value in json.loads(headers)),
        body=bytes(body),
        status=status,
        error=error,
        truncated=bool(truncated),
        event_ids=event_ids,
    )


def _event(row: Row) -> Event:
    id_, source, type_, subject, time, data, relay, request_id = row
    return Event(
        id=id_,
        source=source,
        type=type_,
        subject=subject,
        time=time,
        data=json.loads(data),
        relay=relay,
        request_id=request_id,
    )
