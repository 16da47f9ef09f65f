"""What the SQLite writer's statements cost alone for one small ingested request, no server:
the request's and its event's inserts, each in its own savepoint, 25 to a group commit, as the
writer runs them (relayhook.store.sqlite.threads), at each `synchronous` level and without the
secondary indexes. A benchmark, not a test: it prints CPU and wall time per request.

    python bench/writer_sql.py                 # 2 rounds x 5,000 requests per variant
    python bench/writer_sql.py --rounds 3 --batches 400

The database is a fresh file in a temporary folder, made by relayhook's own migrations.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from relayhook.assembly import new_uuid
from relayhook.store.sqlite import INSERT_EVENT, SQLiteStore
from relayhook.store.sqlite.requests import INSERT_REQUEST

SECONDARY = ("events_relay_type", "events_subject", "events_request_id", "requests_relay_status")
NOW = "2026-12-01T00:00:00.000Z"
HEADERS = '[["content-type","application/json"],["host","127.0.0.1:8080"],["user-agent","wrk"]]'


def database(folder: Path, drop: tuple[str, ...]) -> sqlite3.Connection:
    path = folder / f"relayhook-{len(list(folder.iterdir()))}.db"

    async def create() -> None:
        store = SQLiteStore(path)
        await store.open()
        await store.close()

    asyncio.run(create())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for index in drop:
        conn.execute(f"DROP INDEX {index}")
    return conn


def rows() -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    request_id = new_uuid()
    request = (
        request_id,
        "generic",
        NOW,
        "POST",
        "",
        HEADERS,
        b'{"a":1,"bb":"hello"}' * 17,
        "accepted",
        None,
        0,
        "[]",
        0,
    )
    events = [
        (
            new_uuid(),
            request_id,
            "generic",
            "generic.webhook.received",
            "generic/generic",
            "",
            NOW,
            '{"a":1,"bb":"hello"}',
        )
    ]
    return request, events


def run(conn: sqlite3.Connection, synchronous: str, batches: int, per: int) -> tuple[float, float]:
    """(CPU us, wall us) per request."""
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    jobs = [[rows() for _ in range(per)] for _ in range(batches)]
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in jobs:
        conn.execute("BEGIN IMMEDIATE")
        for request, events in batch:
            conn.execute("SAVEPOINT job")
            conn.execute(INSERT_REQUEST, request)
            conn.executemany(INSERT_EVENT, events)
            conn.execute("RELEASE job")
        conn.execute("COMMIT")
    n = batches * per
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-commit", type=int, default=25)
    args = parser.parse_args()
    variants = [
        ("every index", (), "FULL"),
        ("every index", (), "NORMAL"),
        ("every index", (), "OFF"),
        ("no secondary index", SECONDARY, "FULL"),
    ]
    print("| variant | synchronous | CPU us/request | wall us/request |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for label, drop, synchronous in variants:
                conn = database(Path(folder), drop)
                try:
                    cpu, wall = run(conn, synchronous, args.batches, args.per_commit)
                finally:
                    conn.close()
                print(f"| {label} | {synchronous} | {cpu:.1f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
