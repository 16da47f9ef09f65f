"""The smallest honest durable forwarder: what durability itself costs in Python (issue 23).

    python bench/durable.py --port 8004 --database /tmp/d/durable.db                 # ingest only
    python bench/durable.py --port 8004 --database /tmp/d/durable.db --sink URL      # and forward

Starlette under uvicorn (uvloop, httptools, no access log: as `relayhook serve` runs). `POST /in`
reads the body and hands it to one writer thread that owns one SQLite file (WAL,
`synchronous = FULL`) and commits whatever is queued in one transaction (group commit); the
request is answered only once the commit that holds its row returned. With `--sink`, each stored
row is then posted to the sink with one shared aiohttp session (keep-alive, at most
`--concurrency` at once) and a second write, group-committed the same way, records the outcome
(`delivered` with the status, or `failed`). Rows still `pending` at start (a crash between the
two writes) are sent again first. Nothing else: no mapping, no events, no history, no retries
beyond the restart. `GET /healthz` answers 200.

The table `messages(id, body, status, code)` is what bench/compare.py reads for its zero-loss check.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ACCEPTED = b'{"accepted":1}'
BATCH = 512  # rows per group commit at most
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, body BLOB NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'pending', code INTEGER)"
)
INSERT = "INSERT INTO messages (body) VALUES (?)"
OUTCOME = "UPDATE messages SET status = ?, code = ? WHERE id = ?"

# A queued write: (sql, parameters, a callback run on the loop with the row id once committed).
Write = tuple[str, tuple[Any, ...], Callable[[int], None]]


class Writer:
    """One thread, one connection: every write queued while the last commit ran goes into the
    next transaction; the callbacks run on the event loop after that commit, in one hand-off."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute(SCHEMA)
        self.thread = threading.Thread(target=self._run, name="durable-writer", daemon=True)
        self.thread.start()

    def pending(self) -> list[tuple[int, bytes]]:
        """Rows stored but not yet forwarded (read once at start, before any write)."""
        return list(self.db.execute("SELECT id, body FROM messages WHERE status = 'pending'"))

    def write(self, sql: str, parameters: tuple[Any, ...]) -> asyncio.Future[int]:
        future: asyncio.Future[int] = self.loop.create_future()
        self.queue.put((sql, parameters, future.set_result))
        return future

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)
        self.db.close()

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)  # stop after this commit
                    break
                batch.append(item)
            done: list[tuple[Callable[[int], None], int]] = []
            self.db.execute("BEGIN")
            for sql, parameters, callback in batch:
                done.append((callback, self.db.execute(sql, parameters).lastrowid or 0))
            self.db.execute("COMMIT")  # FULL: fsync'd before anyone is answered
            self.loop.call_soon_threadsafe(_resolve, done)


def _resolve(done: list[tuple[Callable[[int], None], int]]) -> None:
    for callback, row_id in done:
        callback(row_id)


def durable_app(database: Path, sink: str | None, concurrency: int) -> Any:
    import aiohttp
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    state: dict[str, Any] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def forward(row_id: int, body: bytes) -> None:
        async with state["slots"]:
            try:
                async with state["session"].post(
                    sink, data=body, headers={"Content-Type": "application/json"}
                ) as answer:
                    await answer.read()
                outcome = ("delivered" if answer.status < 300 else "failed", answer.status)
            except (aiohttp.ClientError, TimeoutError):
                outcome = ("failed", None)
        await state["writer"].write(OUTCOME, (*outcome, row_id))

    def send(row_id: int, body: bytes) -> None:
        task = asyncio.create_task(forward(row_id, body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer = state["writer"] = Writer(database, asyncio.get_running_loop())
        if sink is not None:
            state["slots"] = asyncio.Semaphore(concurrency)
            state["session"] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency), trust_env=False
            )
            for row_id, body in writer.pending():
                send(row_id, body)
        try:
            yield
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=10)
            if sink is not None:
                await state["session"].close()
            writer.stop()

    async def ingest(request: Request) -> Response:
        body = await request.body()
        row_id = await state["writer"].write(INSERT, (body,))
        if sink is not None:
            send(row_id, body)
        return Response(ACCEPTED, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b"ok")

    return Starlette(
        routes=[Route("/in", ingest, methods=["POST"]), Route("/healthz", health)],
        lifespan=lifespan,
    )


def counts(database: Path) -> dict[str, int]:
    """Rows by status (read-only; WAL readers do not block the server)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        return dict(db.execute("SELECT status, count(*) FROM messages GROUP BY status"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--sink", help="forward each stored body to this URL")
    parser.add_argument(
        "--concurrency", type=int, default=128, help="forwards in flight at most (default: 128)"
    )
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        durable_app(args.database, args.sink, args.concurrency),
        host=HOST,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
