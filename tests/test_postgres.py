"""The PostgreSQL engine's own promises, beyond the contract suites (which run on it too):
migrations, NOTIFY to subscribers, and connections lost and found again.

Connections are "lost" by `pg_terminate_backend`, as a database restart ends them; the restart
itself, under load, is tests/test_scaleout.py's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from conftest import run
from postgres import query
from test_store import make_event, make_request

from relayhook.store import NewDelivery, StoreError, open_store
from relayhook.store.base import StoredHook, StoredRelay, Topic
from relayhook.store.postgres import PostgresStore, schema

NOW = 1_700_000_000.0


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` on the loop until it holds; TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def terminate_others(url: str, application_name: str = "relayhook") -> int:
    """End every relayhook connection to the database, as a restart would."""
    conn = await asyncpg.connect(url)
    try:
        ended: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1",
            application_name,
        )
        return ended
    finally:
        await conn.close()


def with_stores(url: str, count: int, body: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        stores = [PostgresStore(url) for _ in range(count)]
        for store in stores:
            await store.open()
        try:
            await body(*stores)
        finally:
            for store in stores:
                await store.close()

    run(main())


def test_open_store_names_the_postgres_engine(postgres_url: str) -> None:
    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    assert "@" not in PostgresStore("postgresql://u:secret@h:5/db").where.replace("u@", "")


def test_migrations_are_recorded_and_applied_once(postgres_url: str) -> None:
    async def body(first: PostgresStore, second: PostgresStore) -> None:
        assert [m.version for m in first.migrations_applied] == list(range(1, schema.LATEST + 1))
        assert second.migrations_applied == []

    with_stores(postgres_url, 2, body)
    rows = query(postgres_url, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in schema.MIGRATIONS]


def test_a_newer_schema_is_refused_and_a_pending_one_without_migrate(postgres_url: str) -> None:
    with_stores(postgres_url, 1, lambda store: asyncio.sleep(0))
    query(postgres_url, "DELETE FROM schema_migrations WHERE version > 1")
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreError, match="version 1; .*run `relayhook migrate`"):
        run(store.open(migrate=False))
    run(store.close())

    query(
        postgres_url,
        "INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')",
        schema.LATEST + 1,
    )
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreError, match="newer than this relayhook's.*upgrade relayhook"):
        run(store.open())
    run(store.close())


def test_writes_commit_with_synchronous_commit_on(postgres_url: str) -> None:
    async def body(store: PostgresStore) -> None:
        setting = await store._committer.submit(
            lambda conn: conn.fetchval("SHOW synchronous_commit")
        )
        assert setting == "on"

    with_stores(postgres_url, 1, body)


def test_subscribers_hear_of_other_processes_deliveries_and_hook_changes(
    postgres_url: str,
) -> None:
    async def body(worker: PostgresStore, web: PostgresStore) -> None:
        heard: list[Topic] = []
        worker.subscribe(heard.append)
        # On connecting it says both (whatever was sent before it listened)...
        await eventually(lambda: worker._listener.connections == 1 and len(heard) == 2)
        heard.clear()
        event = make_event("e1")
        delivery = NewDelivery("d1", "e1", "h1", None, "pending", NOW)
        await web.ingest(make_request("r1"), [event], [delivery])
        await eventually(lambda: heard == ["deliveries"])
        await web.ingest(make_request("r2"), [make_event("e2")])  # no delivery: nothing said
        await web.set_hook_active("h1", False, "410", NOW)
        await eventually(lambda: heard == ["deliveries", "config"])
        # Every change of the live configuration, with the version that says it (one read).
        version = await worker.config_version()
        await web.create_relay(StoredRelay("r", "generic", "api", "sealed", NOW, NOW))
        await web.put_hook(StoredHook("h2", "api", {"url": "x"}, None, NOW), create=True)
        await web.delete_hook("h2", at=NOW)
        await eventually(lambda: heard.count("config") == 4)
        assert await worker.config_version() == version + 3

    with_stores(postgres_url, 2, body)


def test_a_lost_connection_fails_one_write_and_the_next_reconnects(postgres_url: str) -> None:
    async def body(store: PostgresStore) -> None:
        heard: list[Topic] = []
        store.subscribe(heard.append)
        await eventually(lambda: store._listener.connections == 1)
        await store.ingest(make_request("r1"), [make_event("e1")])
        assert await terminate_others(postgres_url) >= 2  # the writer, a reader, the listener
        try:
            await store.ingest(make_request("r2"), [make_event("e2")])
        except StoreError:
            pass  # the write that found its connection gone: never reported as stored
        await store.ingest(make_request("r3"), [make_event("e3")])
        stored = {e.id for e in await _read_again(store)}
        assert {"e1", "e3"} <= stored
        # The listener is back, and says "look now" for what it may have missed.
        await eventually(lambda: store._listener.connections == 2)
        assert heard.count("deliveries") >= 2 and heard.count("config") >= 2

    with_stores(postgres_url, 1, body)


async def _read_again(store: PostgresStore) -> list[object]:
    """A read, once more if the first one found its pooled connection ended."""
    try:
        return list(await store.list_events(limit=10))
    except StoreError:
        return list(await store.list_events(limit=10))


def test_a_database_that_is_down_is_a_store_error_not_a_wait() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:9/relayhook")  # nothing listens
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot open postgresql://postgres@127.0.0.1:9"):
        run(store.open())
    assert time.monotonic() - started < 5
    run(store.close())
