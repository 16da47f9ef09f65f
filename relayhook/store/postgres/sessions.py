"""Console sessions on PostgreSQL: the same contract as relayhook.store.sqlite.sessions (its
table: migration 9 in relayhook.store.postgres.schema)."""

from __future__ import annotations

import asyncpg

from relayhook.store.base import ConsoleSession
from relayhook.store.postgres.deliveries import count_of

COLUMNS = "id, account, created_at, last_seen_at, expires_at, address, user_agent"


def _session(row: asyncpg.Record) -> ConsoleSession:
    id_, account, created, seen, expires, address, agent = row
    return ConsoleSession(id_, account, created, seen, expires, address, agent)


async def create(conn: asyncpg.Connection, session: ConsoleSession, token_hash: str) -> None:
    await conn.execute("DELETE FROM console_sessions WHERE expires_at <= $1", session.created_at)
    await conn.execute(
        f"INSERT INTO console_sessions ({COLUMNS}, token_hash) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7, $8)",
        session.id,
        session.account,
        session.created_at,
        session.last_seen_at,
        session.expires_at,
        session.address,
        session.user_agent,
        token_hash,
    )


async def find(conn: asyncpg.Connection, token_hash: str, now: float) -> ConsoleSession | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM console_sessions WHERE token_hash = $1 AND expires_at > $2",
        token_hash,
        now,
    )
    return None if row is None else _session(row)


async def touch(conn: asyncpg.Connection, session_id: str, at: float) -> None:
    await conn.execute(
        "UPDATE console_sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1",
        at,
        session_id,
    )


async def list_open(
    conn: asyncpg.Connection, account: str | None, now: float
) -> list[ConsoleSession]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM console_sessions WHERE expires_at > $1"
        " AND ($2::text IS NULL OR account = $2)"
        " ORDER BY last_seen_at DESC, id",
        now,
        account,
    )
    return [_session(row) for row in rows]


async def revoke(conn: asyncpg.Connection, session_id: str) -> bool:
    return (
        count_of(await conn.execute("DELETE FROM console_sessions WHERE id = $1", session_id)) == 1
    )


async def revoke_all(conn: asyncpg.Connection, account: str, keep: str | None) -> int:
    return count_of(
        await conn.execute(
            "DELETE FROM console_sessions WHERE account = $1 AND id <> $2", account, keep or ""
        )
    )
