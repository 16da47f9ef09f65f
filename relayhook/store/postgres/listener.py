"""LISTEN on a connection of its own, for the subscribers of a PostgreSQL store.

Started by the first `subscribe`. When the connection is lost (the database restarts), it
connects again with a growing pause, and then tells every subscriber both topics: notifications
sent while it was away are lost, so "look now" is the safe thing to say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from relayhook.store.base import Topic
from relayhook.store.postgres.committer import CHANNEL, CONNECTION_ERRORS

log = logging.getLogger("relayhook.store.postgres")

TOPICS: tuple[Topic, ...] = ("deliveries", "config")
CHECK_EVERY = 5.0  # seconds between looks at an idle connection (a silent network loss)
PAUSES = (0.2, 0.5, 1.0, 2.0, 5.0)  # before each reconnection; the last repeats


class Listener:
    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._callbacks: list[Callable[[Topic], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.connections = 0  # how many times it connected (for tests)

    def add(self, callback: Callable[[Topic], None]) -> None:
        self._callbacks.append(callback)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="relayhook-postgres-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _tell(self, topic: Topic) -> None:
        for callback in self._callbacks:
            try:
                callback(topic)
            except Exception:
                log.exception("a store subscriber failed on %r", topic)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if payload in TOPICS:
            self._tell(payload)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                conn = await self._connect()
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                pause = PAUSES[min(failures, len(PAUSES) - 1)]
                failures += 1
                log.warning("store listener: cannot connect (%s); again in %s s", exc, pause)
                await asyncio.sleep(pause)
                continue
            failures = 0
            try:
                await self._listen(conn)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("store listener: connection lost (%s); reconnecting", exc)
            finally:
                if not conn.is_closed():
                    conn.terminate()

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self.connections += 1
        for topic in TOPICS:  # whatever was sent before this connection listened
            self._tell(topic)
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), CHECK_EVERY)
            if not lost.is_set():
                await asyncio.wait_for(conn.execute("SELECT 1"), CHECK_EVERY)
