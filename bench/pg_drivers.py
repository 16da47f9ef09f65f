"""psycopg 3 (+ psycopg_pool) against asyncpg on the two paths the PostgreSQL engine lives on.

    .venv/bin/python bench/pg_drivers.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

- **ingest**: group commit. `--clients` tasks each submit GMetri-sized writes (one request row,
  500 event rows, 500 delivery rows, inserted as arrays through `unnest`, ON CONFLICT DO NOTHING,
  as the engine does) to one writer that runs every queued write in one transaction,
  `synchronous_commit = on`. Figure: events committed per second.
- **claim**: `--claimers` tasks, each on its own pooled connection, claim 50 due deliveries at a
  time with `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 50) RETURNING`
  joined to their events, then finish each one (one UPDATE per delivery, as a dispatcher does).
  Figure: deliveries claimed and finished per second.

Each driver gets a fresh database (created and dropped here), the same schema and the same
rows; the drivers run one after the other, `--repeat` times each, alternating. Nothing else is
measured: no HTTP, no mapping. The figures and the choice are in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import psycopg_pool

SCHEMA = """
CREATE TABLE requests (seq bigserial PRIMARY KEY, id text UNIQUE NOT NULL, body bytea NOT NULL);
CREATE TABLE events (seq bigserial PRIMARY KEY, id text UNIQUE NOT NULL, request_id text NOT NULL,
                     subject text, data text NOT NULL);
CREATE TABLE deliveries (seq bigserial PRIMARY KEY, id text UNIQUE NOT NULL,
                         event_id text NOT NULL, hook text NOT NULL, status text NOT NULL,
                         due_at float8 NOT NULL, lease_until float8, lease_owner text,
                         attempts int NOT NULL DEFAULT 0);
CREATE INDEX deliveries_claimable ON deliveries (hook, seq)
    WHERE status IN ('pending', 'failed', 'claimed');
"""
INSERT_REQUEST = "INSERT INTO requests (id, body) VALUES ($1, $2)"
INSERT_EVENTS = (
    "INSERT INTO events (id, request_id, subject, data)"
    " SELECT e.id, $2, e.subject, e.data FROM unnest($1::text[], $3::text[], $4::text[])"
    " AS e(id, subject, data) ON CONFLICT (id) DO NOTHING"
)
INSERT_DELIVERIES = (
    "INSERT INTO deliveries (id, event_id, hook, status, due_at)"
    " SELECT d.id, d.event_id, 'h', 'pending', $3 FROM unnest($1::text[], $2::text[])"
    " AS d(id, event_id)"
)
CLAIM = """
UPDATE deliveries AS d SET status = 'claimed', lease_until = $2 + 60, lease_owner = $3
FROM events AS e
WHERE d.id IN (SELECT id FROM deliveries WHERE hook = 'h'
               AND status IN ('pending', 'failed', 'claimed')
               AND (status <> 'claimed' AND due_at <= $2 OR status = 'claimed'
                    AND lease_until <= $2)
               ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
  AND e.id = d.event_id
RETURNING d.id, d.event_id, e.subject, e.data
"""
FINISH = (
    "UPDATE deliveries SET status = 'succeeded', lease_until = NULL, lease_owner = NULL,"
    " attempts = attempts + 1 WHERE id = $1 AND lease_owner = $2"
)


def psycopg_sql(sql: str) -> str:
    """asyncpg's $n placeholders as psycopg's %s (each is used once, in order, in ours)."""
    out = sql
    for n in range(9, 0, -1):
        out = out.replace(f"${n}", f"%(p{n})s")
    return out


def params(*values: Any) -> dict[str, Any]:
    return {f"p{n}": value for n, value in enumerate(values, start=1)}


def gmetri_batch() -> tuple[str, bytes, list[str], list[str], list[str], list[str]]:
    row = {"identifier": "user123@x.com", "variables": {"score": 75, "quizCompleted": False}}
    data = json.dumps(row, separators=(",", ":"))
    events = [str(uuid.uuid4()) for _ in range(500)]
    return (
        str(uuid.uuid4()),
        json.dumps([row] * 500).encode(),
        events,
        ["user123@x.com"] * 500,
        [data] * 500,
        [str(uuid.uuid4()) for _ in range(500)],
    )


# -- each driver: a writer that group-commits, and a claimer


class Writer:
    """Jobs queue up; one task runs all that are queued in one transaction."""

    def __init__(self, run_batch: Callable[[list[Any]], Awaitable[None]]) -> None:
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future[None]]] = asyncio.Queue()
        self.run_batch = run_batch
        self.commits = 0

    async def submit(self, job: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.queue.put((job, future))
        await future

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 256:
                batch.append(self.queue.get_nowait())
            await self.run_batch([job for job, _ in batch])
            self.commits += 1
            for _, future in batch:
                future.set_result(None)


async def ingest(writer: Writer, clients: int, batches: int) -> float:
    jobs = [gmetri_batch() for _ in range(batches)]
    task = asyncio.create_task(writer.run())
    started = time.perf_counter()

    async def client(mine: list[Any]) -> None:
        for job in mine:
            await writer.submit(job)

    await asyncio.gather(*(client(jobs[i::clients]) for i in range(clients)))
    elapsed = time.perf_counter() - started
    task.cancel()
    return batches * 500 / elapsed


async def psycopg_ingest(dsn: str, clients: int, batches: int) -> float:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    request, events, deliveries = (
        psycopg_sql(s) for s in (INSERT_REQUEST, INSERT_EVENTS, INSERT_DELIVERIES)
    )

    async def run_batch(jobs: list[Any]) -> None:
        async with conn.transaction():
            for rid, body, ids, subjects, data, dids in jobs:
                await conn.execute(request, params(rid, body))
                await conn.execute(events, params(ids, rid, subjects, data), binary=True)
                await conn.execute(deliveries, params(dids, ids, time.time()), binary=True)

    try:
        return await ingest(Writer(run_batch), clients, batches)
    finally:
        await conn.close()


async def asyncpg_ingest(dsn: str, clients: int, batches: int) -> float:
    conn = await asyncpg.connect(dsn)

    async def run_batch(jobs: list[Any]) -> None:
        async with conn.transaction():
            for rid, body, ids, subjects, data, dids in jobs:
                await conn.execute(INSERT_REQUEST, rid, body)
                await conn.execute(INSERT_EVENTS, ids, rid, subjects, data)
                await conn.execute(INSERT_DELIVERIES, dids, ids, time.time())

    try:
        return await ingest(Writer(run_batch), clients, batches)
    finally:
        await conn.close()


async def psycopg_claim(dsn: str, claimers: int, total: int) -> float:
    pool = psycopg_pool.AsyncConnectionPool(
        dsn, min_size=claimers, max_size=claimers, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    claim, finish = psycopg_sql(CLAIM), psycopg_sql(FINISH)

    async def claimer(owner: str) -> int:
        done = 0
        for _ in range(total):  # bounded
            async with pool.connection() as conn:
                rows = await (await conn.execute(claim, params(50, time.time(), owner))).fetchall()
            if not rows:
                return done
            for row in rows:
                async with pool.connection() as conn:
                    await conn.execute(finish, params(row[0], owner))
            done += len(rows)
        return done

    try:
        started = time.perf_counter()
        done = sum(await asyncio.gather(*(claimer(f"w{i}") for i in range(claimers))))
        return done / (time.perf_counter() - started)
    finally:
        await pool.close()


async def asyncpg_claim(dsn: str, claimers: int, total: int) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=claimers, max_size=claimers)

    async def claimer(owner: str) -> int:
        done = 0
        for _ in range(total):  # bounded
            rows = await pool.fetch(CLAIM, 50, time.time(), owner)
            if not rows:
                return done
            for row in rows:
                await pool.execute(FINISH, row[0], owner)
            done += len(rows)
        return done

    try:
        started = time.perf_counter()
        done = sum(await asyncio.gather(*(claimer(f"w{i}") for i in range(claimers))))
        return done / (time.perf_counter() - started)
    finally:
        await pool.close()


# -- a fresh database per run


async def fresh_database(admin_dsn: str, name: str) -> str:
    conn = await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name  # a URL: both drivers read it
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()
    return dsn


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def one_run(args: argparse.Namespace, driver: str) -> dict[str, float]:
    name = f"relayhook_bench_{driver}"
    dsn = await fresh_database(args.dsn, name)
    try:
        run_ingest = psycopg_ingest if driver == "psycopg" else asyncpg_ingest
        run_claim = psycopg_claim if driver == "psycopg" else asyncpg_claim
        events = await run_ingest(dsn, args.clients, args.batches)
        claims = await run_claim(dsn, args.claimers, args.batches * 500)
        return {"ingest events/s": events, "claim+finish deliveries/s": claims}
    finally:
        await drop_database(args.dsn, name)


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, float]]] = {"psycopg": [], "asyncpg": []}
    for _ in range(args.repeat):
        for driver in results:
            results[driver].append(await one_run(args, driver))
    print(
        f"| driver | ingest events/s (median of {args.repeat}) |"
        " claim + finish deliveries/s (median) |"
    )
    print("| --- | --- | --- |")
    for driver, runs in results.items():
        ingest_rate = statistics.median(r["ingest events/s"] for r in runs)
        claim_rate = statistics.median(r["claim+finish deliveries/s"] for r in runs)
        print(f"| {driver} {version(driver)} | {ingest_rate:,.0f} | {claim_rate:,.0f} |")


def version(driver: str) -> str:
    return psycopg.__version__ if driver == "psycopg" else asyncpg.__version__


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--clients", type=int, default=8, help="concurrent ingest writers")
    parser.add_argument("--batches", type=int, default=40, help="500-event writes per run")
    parser.add_argument("--claimers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
