"""Group commit on PostgreSQL: every write queued while the last transaction ran goes into the
next one, on one connection, so a burst of webhooks costs one WAL flush rather than one each
(`synchronous_commit = on`: a write answered is on the server's disk).

Jobs are `async fn(conn)` that only run SQL on rows built beforehand, so a job can run twice:
when one job of a batch fails, the batch is rolled back and each job runs again in a
transaction of its own, so only the failing one fails (cheaper than a savepoint per job, and a
failing job is rare). When the connection fails, every job of the batch fails with StoreError and
the next batch connects again: a database restarting costs answers, never a false "stored".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from relayhook.store.base import StoreError, StoreUnavailableError, Topic

T = TypeVar("T")
log = logging.getLogger("relayhook.store.postgres")

CHANNEL = "relayhook"  # NOTIFY relayhook, 'deliveries' | 'config'
# InternalClientError: asyncpg's protocol state machine after a connection was terminated in
# the middle of an exchange ("cannot switch to state 15"): that connection is done for.
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)
CONTRACT_ERRORS = (KeyError,)  # passed to the caller as they are

Connect = Callable[[], Awaitable[asyncpg.Connection]]


def store_error(exc: BaseException, *, unavailable: bool = False) -> BaseException:
    """`exc` as the caller should see it: a contract error as it is; StoreUnavailableError
    when the database could not be reached (the same write may succeed later: the ingress
    spools it); else StoreError."""
    if isinstance(exc, (*CONTRACT_ERRORS, StoreError)):
        return exc
    kind = (
        StoreUnavailableError if unavailable or isinstance(exc, CONNECTION_ERRORS) else (StoreError)
    )
    error = kind(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[asyncpg.Connection], Awaitable[Any]]
    future: asyncio.Future[Any]
    notify: Topic | None

    def settle(self, result: Any, error: BaseException | None) -> None:
        if self.future.done():  # its caller was cancelled; a committed write stays committed
            return
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(store_error(error))


class _JobFailed(Exception):
    def __init__(self, job: _Job, error: Exception) -> None:
        self.job, self.error = job, error


class GroupCommitter:
    """The one writing connection and the task that feeds it. `commits` counts transactions."""

    def __init__(self, connect: Connect, *, max_batch: int = 256) -> None:
        self._connect = connect
        self.max_batch = max_batch
        self.commits = 0
        self._conn: asyncpg.Connection | None = None
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._task = asyncio.create_task(self._run(), name="relayhook-postgres-writer")

    async def stop(self) -> None:
        """Commit every job submitted so far, then close. Safe to call twice."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            self._queue.put_nowait(None)
            await task
        await self._drop_connection()

    async def submit(
        self, fn: Callable[[asyncpg.Connection], Awaitable[T]], notify: Topic | None = None
    ) -> T:
        """Run `fn` in the next transaction; its result once that has committed. `notify` is
        sent (NOTIFY) with that commit, to every process listening."""
        if self._task is None:
            raise StoreUnavailableError(
                "the store is closed" if self._closed else "the store is not open"
            )
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(fn, future, notify))
        return await future

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stop = True
                    break
                batch.append(job)
            try:
                await self._commit(batch)
            except Exception as exc:  # the writer must outlive any one batch
                log.exception("postgres writer: a batch failed unexpectedly")
                for job in batch:
                    job.settle(None, exc)

    async def _commit(self, batch: list[_Job]) -> None:
        try:
            results = await self._transaction(batch)
        except _JobFailed as failed:
            if len(batch) == 1 or _is_connection_error(failed.error, self._conn):
                await self._fail(batch, failed.error)
                return
            for job in batch:  # find the one that fails: each alone
                await self._commit([job])
            return
        except Exception as exc:  # BEGIN, NOTIFY or COMMIT: nothing of the batch is known kept
            await self._fail(batch, exc)
            return
        self.commits += 1
        for job, result in zip(batch, results, strict=True):
            job.settle(result, None)

    async def _transaction(self, batch: list[_Job]) -> list[Any]:
        conn = await self._connection()
        async with conn.transaction():
            results = []
            for job in batch:
                try:
                    results.append(await job.fn(conn))
                except Exception as exc:
                    raise _JobFailed(job, exc) from exc
            for topic in sorted(_topics(batch)):
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, topic)
        return results

    async def _fail(self, batch: Iterable[_Job], error: Exception) -> None:
        failed: BaseException = error
        if _is_connection_error(error, self._conn):
            log.error(
                "postgres writer: %s: %s (reconnecting for the next write)",
                type(error).__name__,
                error,
            )
            await self._drop_connection()
            failed = store_error(error, unavailable=True)
        for job in batch:
            job.settle(None, failed)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
            if not conn.is_closed():
                conn.terminate()


def _topics(batch: Iterable[_Job]) -> set[Topic]:
    return {job.notify for job in batch if job.notify is not None}


def _is_connection_error(error: BaseException, conn: asyncpg.Connection | None) -> bool:
    return isinstance(error, CONNECTION_ERRORS) or conn is None or conn.is_closed()
