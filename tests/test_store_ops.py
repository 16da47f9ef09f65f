"""The operations half of the store contract: prune, backlog, probe_write, schema_current,
backup. Run against every engine in ENGINES (today SQLite), with the clock passed in: every
time here is the test's, never the machine's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import StoreFactory
from test_store import make_event, make_request

from relayhook.core.events import format_time
from relayhook.store import (
    Attempt,
    BacklogEntry,
    Cutoffs,
    NewDelivery,
    Outcome,
    PruneResult,
    SQLiteStore,
    Store,
    StoreError,
)
from relayhook.store.sqlite import SCHEMA_VERSION, schema

T = TypeVar("T")
FIXTURES = Path(__file__).parent / "fixtures"
DAY = 86400.0
NOW = 1_700_000_000.0


def run_with(new_store: StoreFactory, test: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    async def main() -> T:
        store = new_store()
        await store.open()
        try:
            return await test(store)
        finally:
            await store.close()

    return asyncio.run(main())


def at(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(seconds, UTC))


async def seed(
    store: Store,
    request_id: str,
    *,
    received: float,
    relay: str = "r1",
    hooks: tuple[str, ...] = ("h1",),
    events: int = 1,
) -> list[str]:
    """A request received at `received` with `events` events, each routed to `hooks`; the
    delivery ids (`{event}.{hook}`)."""
    request = dataclasses.replace(make_request(request_id, relay=relay), received_at=at(received))
    made = [make_event(f"{request_id}-e{i}", relay=relay) for i in range(events)]
    deliveries = [
        NewDelivery(f"{e.id}.{hook}", e.id, hook, None, "pending", received)
        for e in made
        for hook in hooks
    ]
    await store.ingest(request, made, deliveries)
    return [d.id for d in deliveries]


async def settle(
    store: Store, hook: str, status: str, *, at_time: float, count: int = 1000, attempt: bool = True
) -> list[str]:
    """Claim the hook's due deliveries and finish them as `status` at `at_time`."""
    claimed = await store.claim_due(
        hook=hook, now=at_time, limit=count, lease_seconds=30, owner="w"
    )
    for delivery in claimed:
        tried = (
            Attempt(delivery.id, delivery.attempts + 1, at_time, 0.0, {}, 200, (), b"", None, None)
            if attempt
            else None
        )
        outcome = Outcome(status, due_at=at_time + 60 if status == "failed" else None)  # type: ignore[arg-type]
        await store.finish(delivery.id, owner="w", outcome=outcome, attempt=tried)
    return [d.id for d in claimed]


async def remaining(store: Store) -> tuple[set[str], set[str], set[str]]:
    """(request ids, event ids, delivery ids) still stored."""
    requests = {r.id for r in await store.list_requests(limit=1000)}
    events = {e.id for e in await store.list_events(limit=1000)}
    deliveries = {d.id for d in await store.list_deliveries(limit=1000)}
    return requests, events, deliveries


# -- prune


def test_prune_deletes_old_finished_work_and_keeps_the_unfinished(new_store: StoreFactory) -> None:
    async def test(store: Store) -> None:
        old, new = NOW - 40 * DAY, NOW - 1 * DAY
        done = await seed(store, "done", received=old, hooks=("h1",), events=2)
        await settle(store, "h1", "succeeded", at_time=old + 10)
        waiting = await seed(store, "waiting", received=old, hooks=("h2",))
        await settle(store, "h2", "failed", at_time=old + 10)  # failed: due again, unfinished
        paused = await seed(store, "paused", received=old, hooks=("h3",))
        await store.set_hook_active("h3", False, "410", old + 20)
        await seed(store, "plain", received=old, hooks=())  # no delivery at all
        rejected = dataclasses.replace(
            make_request("rejected", status="rejected", error="x"), received_at=at(old)
        )
        await store.ingest(rejected, ())
        fresh = await seed(store, "fresh", received=new, hooks=("h4",))
        await settle(store, "h4", "dead", at_time=new)

        result = await store.prune(Cutoffs(default=NOW - 30 * DAY), batch=2)
        assert result == PruneResult(requests=3, events=3, deliveries=2, attempts=2)
        requests, events, deliveries = await remaining(store)
        assert requests == {"waiting", "paused", "fresh"}
        assert events == {"waiting-e0", "paused-e0", "fresh-e0"}
        assert deliveries == {*waiting, *paused, *fresh}
        assert not set(done) & deliveries
        assert await store.prune(Cutoffs(default=NOW - 30 * DAY)) == PruneResult()

    run_with(new_store, test)


def test_a_delivery_finished_recently_keeps_an_old_request(new_store: StoreFactory) -> None:
    async def test(store: Store) -> None:
        old = NOW - 40 * DAY
        await seed(store, "slow", received=old)
        await settle(store, "h1", "dead", at_time=NOW - DAY)  # died yesterday after 39 days
        assert await store.prune(Cutoffs(default=NOW - 30 * DAY)) == PruneResult()
        assert (await remaining(store))[0] == {"slow"}

    run_with(new_store, test)


def test_per_relay_and_per_hook_days_override_the_default(new_store: StoreFactory) -> None:
    async def test(store: Store) -> None:
        ten_days = NOW - 10 * DAY
        await seed(store, "short-relay", received=ten_days, relay="brief", hooks=())
        await seed(store, "default-relay", received=ten_days, relay="r1", hooks=())
        await seed(store, "kept-relay", received=NOW - 400 * DAY, relay="forever", hooks=())
        short = await seed(store, "short-hook", received=ten_days, relay="brief", hooks=("quick",))
        await settle(store, "quick", "succeeded", at_time=ten_days)
        long = await seed(store, "long-hook", received=ten_days, relay="brief", hooks=("audit",))
        await settle(store, "audit", "succeeded", at_time=ten_days)
        cutoffs = Cutoffs(
            default=NOW - 30 * DAY,
            relays={"brief": NOW - 7 * DAY, "forever": None},
            hooks={"quick": NOW - 7 * DAY, "audit": NOW - 90 * DAY},
        )
        result = await store.prune(cutoffs)
        requests, _, deliveries = await remaining(store)
        assert requests == {"default-relay", "kept-relay", "long-hook"}
        assert deliveries == set(long)
        assert not set(short) & deliveries
        assert result.requests == 2 and result.deliveries == 1
        assert await store.prune(Cutoffs(default=None)) == PruneResult()

    run_with(new_store, test)


def test_prune_walks_past_many_held_requests(new_store: StoreFactory) -> None:
    """Requests held by an unfinished delivery come first in time; the prune goes past them."""

    async def test(store: Store) -> None:
        for n in range(7):
            await seed(store, f"held-{n}", received=NOW - 50 * DAY + n, hooks=("paused",))
        for n in range(5):
            await seed(store, f"free-{n}", received=NOW - 40 * DAY + n, hooks=())
        result = await store.prune(Cutoffs(default=NOW - 30 * DAY), batch=2)
        assert result.requests == 5
        assert (await remaining(store))[0] == {f"held-{n}" for n in range(7)}

    run_with(new_store, test)


def test_prune_refuses_an_empty_batch(new_store: StoreFactory) -> None:
    async def test(store: Store) -> None:
        with pytest.raises(ValueError, match="batch"):
            await store.prune(Cutoffs(default=NOW), batch=0)

    run_with(new_store, test)


# -- backlog


def test_the_backlog_counts_waiting_stuck_and_dead_deliveries(new_store: StoreFactory) -> None:
    async def test(store: Store) -> None:
        await seed(store, "a", received=NOW - 300, hooks=("h1", "h2"), events=3)
        await seed(store, "b", received=NOW - 100, hooks=("h1",), events=2)
        await settle(store, "h2", "dead", at_time=NOW, count=2)  # 2 of h2's dead, 1 pending
        await store.claim_due(hook="h1", now=NOW, limit=1, lease_seconds=30, owner="w")
        await seed(store, "c", received=NOW - 50, hooks=("h3",))
        await store.set_hook_active("h3", False, "410", NOW)
        await seed(store, "d", received=NOW, hooks=("h4",))
        await settle(store, "h4", "succeeded", at_time=NOW)
        entries = sorted(await store.backlog(), key=lambda e: (e.hook, e.status))
        assert entries == [
            BacklogEntry("h1", "claimed", 1, NOW - 300),
            BacklogEntry("h1", "pending", 4, NOW - 300),
            BacklogEntry("h2", "dead", 2),
            BacklogEntry("h2", "pending", 1, NOW - 300),
            BacklogEntry("h3", "paused", 1),
        ]

    run_with(new_store, test)


# -- readiness, schema, backup


def test_probe_write_and_schema_current(new_store: StoreFactory) -> None:
    async def test(store: Store) -> None:
        await store.probe_write()
        assert await store.schema_current()

    run_with(new_store, test)


def test_postgres_backup_says_to_use_pg_dump(postgres_url: str, tmp_path: Path) -> None:
    from relayhook.store.postgres import PostgresStore

    async def test(store: Store) -> None:
        with pytest.raises(StoreError, match="pg_dump"):
            await store.backup(tmp_path / "copy.db")

    run_with(lambda: PostgresStore(postgres_url), test)
    assert not (tmp_path / "copy.db").exists()


def test_backup_while_writing_is_a_consistent_single_file(tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    new_store = partial(SQLiteStore, tmp_path / "relayhook.db")

    async def test(store: Store) -> None:
        async def write(n: int) -> None:
            await seed(store, f"w{n}", received=NOW + n, events=5)

        await asyncio.gather(*(write(n) for n in range(20)))
        writers = [asyncio.create_task(write(n)) for n in range(20, 220)]
        await store.backup(target)
        await asyncio.gather(*writers)
        with pytest.raises(FileExistsError):
            await store.backup(target)

    run_with(new_store, test)
    with contextlib.closing(sqlite3.connect(target)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        requests = copy.execute("SELECT count(*) FROM requests").fetchone()[0]
        events = copy.execute("SELECT count(*) FROM events").fetchone()[0]
        deliveries = copy.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    assert 20 <= requests <= 220
    assert events == deliveries == 5 * requests  # never half a write
    assert not (tmp_path / "copy.db.partial").exists()
    assert not (tmp_path / "copy.db-wal").exists()


# -- SQLite only: the migration and the query plans


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_database_gains_the_version_3_indexes(tmp_path: Path, version: int) -> None:
    path = tmp_path / f"v{version}.db"
    script = (FIXTURES / "schema_v1.sql").read_text(encoding="utf-8")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(script + "PRAGMA user_version = 1;")
        schema.migrate(conn, path, apply=True, upto=version)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version

    async def main() -> bool:
        store = SQLiteStore(path)
        await store.open()
        try:
            return await store.schema_current()
        finally:
            await store.close()

    assert asyncio.run(main())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"requests_received_at", "deliveries_finished", "deliveries_stuck"} <= names


def plans(path: Path, sql: str, params: list[Any]) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_prune_and_backlog_read_indexes_not_the_whole_history(tmp_path: Path) -> None:
    """Cheap on scrape and on every prune: no full scan of requests or deliveries."""
    from relayhook.store.sqlite import ops

    async def main() -> None:
        store = SQLiteStore(tmp_path / "relayhook.db")
        await store.open()
        await store.close()

    asyncio.run(main())
    path = tmp_path / "relayhook.db"
    pruner = ops.Pruner(Cutoffs(default=NOW, relays={"r": NOW}, hooks={"h": NOW}), 10)
    captured: list[tuple[str, list[Any]]] = []

    class Spy:
        """Records each query and answers it with no rows."""

        def __init__(self, empty: sqlite3.Connection) -> None:
            self.empty = empty

        def execute(self, sql: str, params: Any = ()) -> Any:
            captured.append((sql, list(params)))
            return self.empty.execute("SELECT 1 WHERE 0")

    with contextlib.closing(sqlite3.connect(":memory:")) as empty:
        pruner._deliveries_after(Spy(empty), (0.0, 0))  # type: ignore[arg-type]
        pruner._requests_after(Spy(empty), ("", 0))  # type: ignore[arg-type]
        ops.backlog(Spy(empty))  # type: ignore[arg-type]
    found = [plans(path, sql, params) for sql, params in captured]
    assert "deliveries_finished" in found[0], found[0]
    assert "requests_received_at" in found[1], found[1]
    assert "deliveries_claimable" in found[2], found[2]
    assert "deliveries_stuck" in found[3], found[3]
    for plan in found:  # a SCAN goes through an index (a partial one), never the table
        for step in plan.split(" | "):
            assert not step.startswith("SCAN") or "INDEX" in step, plan
