"""Erasing a person on PostgreSQL: the same as relayhook.store.sqlite.erasure, in one
transaction; then `wipe` VACUUMs the tables so that no dead row version keeps the value."""

from __future__ import annotations

import asyncpg

from relayhook.core.erasure import TABLES, Found, Subject
from relayhook.store.postgres.deliveries import count_of

BYTEA = {("requests", "body"), ("attempts", "response_body")}


async def erase(conn: asyncpg.Connection, subject: Subject) -> Found:
    deleted = await _delete_subject(conn, subject)
    scrubbed = {}
    for table, keys, columns in TABLES:
        scrubbed[table] = await _scrub_table(conn, subject, table, keys, columns)
    return Found(deleted, scrubbed)


async def _delete_subject(conn: asyncpg.Connection, subject: Subject) -> dict[str, int]:
    events = await conn.fetch(
        "SELECT id FROM events WHERE lower(trim(subject)) = $1", subject.value.lower()
    )
    ids = [row[0] for row in events]
    deliveries = "SELECT id FROM deliveries WHERE event_id = ANY($1::text[])"
    return {
        "attempts": count_of(
            await conn.execute(f"DELETE FROM attempts WHERE delivery_id IN ({deliveries})", ids)
        ),
        "problem_deliveries": count_of(
            await conn.execute(
                f"DELETE FROM problem_deliveries WHERE delivery_id IN ({deliveries})", ids
            )
        ),
        "deliveries": count_of(
            await conn.execute("DELETE FROM deliveries WHERE event_id = ANY($1::text[])", ids)
        ),
        "events": count_of(
            await conn.execute("DELETE FROM events WHERE id = ANY($1::text[])", ids)
        ),
    }


def _text_of(table: str, column: str) -> str:
    if (table, column) in BYTEA:  # bytes that are not UTF-8 read as escapes, never an error
        return f"lower(encode({column}, 'escape'))"
    return f"lower({column})"


async def _scrub_table(
    conn: asyncpg.Connection,
    subject: Subject,
    table: str,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
) -> int:
    where = " OR ".join(f"strpos({_text_of(table, c)}, n) > 0" for c in columns)
    sql = (
        f"SELECT {', '.join(keys + columns)} FROM {table}"
        f" WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS n WHERE {where})"
    )
    changed = 0
    for row in await conn.fetch(sql, subject.needles()):
        key, values = list(row)[: len(keys)], list(row)[len(keys) :]
        updates = {
            c: new
            for c, v in zip(columns, values, strict=True)
            if (new := subject.scrub(v)) is not None
        }
        if updates:
            sets = ", ".join(f"{c} = ${n}" for n, c in enumerate(updates, 1))
            match = " AND ".join(f"{k} = ${n}" for n, k in enumerate(keys, len(updates) + 1))
            await conn.execute(f"UPDATE {table} SET {sets} WHERE {match}", *updates.values(), *key)
            changed += 1
    return changed


async def wipe(conn: asyncpg.Connection) -> None:
    """VACUUM what an erasure touched (outside a transaction)."""
    for table in (
        "requests",
        "events",
        "deliveries",
        "attempts",
        "outcomes",
        "problems",
        "problem_deliveries",
        "samples",
    ):
        await conn.execute(f"VACUUM {table}")
