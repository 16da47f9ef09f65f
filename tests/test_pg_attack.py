"""PostgreSQL findings of issue 17: `/api/events?request=` reads an index, not the table; and a
connection terminated under the store (`pg_terminate_backend`) is store unavailability, never
asyncpg's own InterfaceError or InternalClientError ("cannot switch to state 15")."""

from __future__ import annotations

import asyncio

import asyncpg
from conftest import run
from test_postgres import terminate_others
from test_store import make_event, make_request

from relayhook.store import StoreUnavailableError
from relayhook.store.postgres import PostgresStore


def test_events_of_one_request_are_read_through_an_index(postgres_url: str) -> None:
    async def main() -> str:
        store = PostgresStore(postgres_url)
        await store.open()
        await store.close()
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("""
                INSERT INTO requests (id, relay, received_at, method, query, headers, body,
                                      status)
                SELECT 'r' || n, 'door', '2026-01-01T00:00:00.000Z', 'POST', '', '[]', '',
                       'accepted' FROM generate_series(1, 300) AS n;
                INSERT INTO events (id, request_id, relay, type, source, time, data)
                SELECT 'e' || n, 'r' || (n % 300 + 1), 'door', 't', 's',
                       '2026-01-01T00:00:00.000Z', '{}' FROM generate_series(1, 30000) AS n;
                ANALYZE events;
                SET plan_cache_mode = force_generic_plan;  -- as asyncpg's prepared statements
                PREPARE page(text, bigint) AS SELECT id FROM events WHERE request_id = $1
                    ORDER BY seq DESC LIMIT $2;
            """)
            rows = await conn.fetch("EXPLAIN EXECUTE page('r7', 50)")
            return "\n".join(row[0] for row in rows)
        finally:
            await conn.close()

    plan = run(main())
    assert "events_request_seq" in plan, plan
    assert "Seq Scan" not in plan and "events_pkey" not in plan, plan


def test_terminated_connections_are_store_unavailability_and_the_store_recovers(
    postgres_url: str,
) -> None:
    async def main() -> None:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            await store.ingest(make_request("before"), [make_event("e-before")], [], [])
            seen: list[str] = []
            for round_ in range(20):
                # Reads in flight on pooled connections and a write on the writer's, all cut.
                calls = [store.list_events(request_id="before") for _ in range(4)]
                calls.append(
                    store.ingest(make_request(f"r-{round_}"), [make_event(f"e-{round_}")], [], [])
                )
                tasks = [asyncio.ensure_future(call) for call in calls]
                await asyncio.sleep(0)
                await terminate_others(postgres_url)
                for result in await asyncio.gather(*tasks, return_exceptions=True):
                    if isinstance(result, BaseException):
                        assert isinstance(result, StoreUnavailableError), repr(result)
                        seen.append(type(result.__cause__).__name__)
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # then it works again, on new connections
                try:
                    await store.ingest(make_request("after"), [make_event("e-after")], [], [])
                    assert [e.id for e in await store.list_events(request_id="after")] == [
                        "e-after"
                    ]
                    break
                except StoreUnavailableError:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
            print("errors seen as unavailability:", sorted(set(seen)))
        finally:
            await store.close()

    run(main())
