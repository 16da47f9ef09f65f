"""The threads behind the SQLite engine: one writer with group commit, a pool of readers.

Writes are pure `fn(conn)` jobs handed to a single thread that owns the only write connection (as
in datasette). The thread runs every job already queued in one transaction, each job in its own
savepoint, so a burst of webhooks costs one fsync rather than one each, and one bad job is undone
alone. Callers hear back only after COMMIT returned: that is what lets the HTTP layer acknowledge
the provider as soon as a write returns. Reads use their own connections in worker threads; WAL
lets them run while a write transaction is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from relayhook.store.base import StoreError, StoreUnavailableError

T = TypeVar("T")

# Errors a job may raise that are part of the contract, passed to the caller as they are.
CONTRACT_ERRORS = (KeyError,)


def store_error(exc: BaseException, kind: type[StoreError] = StoreError) -> StoreError:
    """`exc` as the contract's StoreError (or `kind`), with the original as its cause."""
    if isinstance(exc, StoreError):
        return exc
    error = kind(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


class GroupCommitWriter:
    """The one thread that writes. `commits` counts its write transactions."""

    def __init__(self, *, max_batch: int, name: str = "relayhook-sqlite-writer") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch
        self.name = name
        self.commits = 0
        # SimpleQueue: a C queue without Queue's Condition and task accounting (a put per request).
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders submissions against stop()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def started(self) -> bool:
        return self._thread is not None or self._closed

    def queued(self) -> int:
        """How many jobs wait for the writer (approximately: for tests and metrics)."""
        return self._jobs.qsize()

    def start(self, conn: sqlite3.Connection) -> None:
        """Start the thread; it owns `conn` from now on and closes it when it stops."""
        thread = threading.Thread(target=self._run, args=(conn,), name=self.name, daemon=True)
        with self._lock:
            if self.started:
                conn.close()
                raise StoreError("a store is opened once")
            self._thread = thread
            thread.start()

    async def stop(self) -> None:
        """Commit every job submitted so far, then stop. Safe to call twice."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._closed = True
            if thread is not None:
                self._jobs.put(None)  # queued behind every pending job, so those still commit
        if thread is not None:
            await asyncio.to_thread(thread.join)

    async def submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the writer's next transaction; its result once that has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._thread is None:
                raise StoreUnavailableError(
                    "the store is closed" if self._closed else "the store is not open"
                )
            self._jobs.put(_Job(fn, future, loop))
        return await future

    def _run(self, conn: sqlite3.Connection) -> None:
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
                job.settle(None, StoreUnavailableError("the store's writer has stopped"))

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
            # BEGIN or COMMIT failed (another process holds the lock, the disk is full), or
            # SQLite dropped the whole transaction: nothing was kept, through no job's fault.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            _settle([(job, None, store_error(exc, StoreUnavailableError)) for job in batch])
            return
        self.commits += 1
        _settle(
            [(job, result, error) for job, (result, error) in zip(batch, outcomes, strict=True)]
        )


def _settle(answers: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """Answer a batch's callers: one wake-up of each event loop for the whole batch, not one
    per job (each `call_soon_threadsafe` writes to the loop's self-pipe)."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
    ] = {}
    for job, result, error in answers:
        by_loop.setdefault(job.loop, []).append((job.future, result, error))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve_all, settled)


def _resolve_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        _resolve(future, result, error)


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
        # KeyError (an unknown id) is part of the contract; anything else is storage.
        return None, exc if isinstance(exc, CONTRACT_ERRORS) else store_error(exc)
    conn.execute("RELEASE job")
    return result, None


class ReaderPool:
    """Up to `size` read connections, created on first need, each used by one thread at a time;
    `read` runs on the pool's own `size` threads, so a page of the console never waits behind
    the default executor's argon2 hashes, SMTP sends or DNS lookups (nor they behind it)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[sqlite3.Connection] = []
        self._created = 0
        self._closed = False
        self._changed = threading.Condition()
        self._executor: ThreadPoolExecutor | None = None

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`run(fn)` on one of the pool's threads."""
        if self._closed:
            raise StoreError("the store is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self._size, thread_name_prefix="relayhook-sqlite-read"
            )
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run, fn)

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
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

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
            raise store_error(exc) from exc
