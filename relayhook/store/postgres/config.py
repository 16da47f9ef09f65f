"""The live configuration in PostgreSQL: relays and hooks created at run time, and the config
version. Every writing function is a job for the committer and moves the version in the same
transaction as its change; the store sends NOTIFY 'config' with the commit, so listening
processes read it at once (and polling `config_version` stays the fallback).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from relayhook.store.base import Resealed, StoredHook, StoredRelay
from relayhook.store.postgres.deliveries import count_of
from relayhook.store.text import dumps, loads

BUMP_VERSION = "UPDATE config_version SET version = version + 1 WHERE id = 1"
HOOK_COLUMNS = "name, source, spec, sealed, updated_at"
RELAY_COLUMNS = "name, connector, source, sealed, created_at, updated_at, expect"
CANCEL = (
    "UPDATE deliveries SET status = 'cancelled', lease_until = NULL, lease_owner = NULL,"
    " last_error = 'its hook was deleted', updated_at = $1"
    " WHERE hook = $2 AND status IN ('pending', 'failed', 'claimed', 'paused')"
)


async def config_version(conn: asyncpg.Connection) -> int:
    version = await conn.fetchval("SELECT version FROM config_version WHERE id = 1")
    return int(version or 0)


async def bump(conn: asyncpg.Connection) -> None:
    await conn.execute(BUMP_VERSION)


async def save_hooks(
    conn: asyncpg.Connection, source: str, specs: Mapping[str, dict[str, Any]], at: float
) -> None:
    rows = [(name, source, dumps(spec), at) for name, spec in specs.items()]
    await conn.execute("DELETE FROM hooks WHERE source = $1", source)
    await conn.executemany(
        "INSERT INTO hooks (name, source, spec, sealed, updated_at) VALUES ($1, $2, $3, NULL, $4)"
        " ON CONFLICT (name) DO UPDATE SET source = excluded.source, spec = excluded.spec,"
        " sealed = NULL, updated_at = excluded.updated_at",
        rows,
    )
    await bump(conn)


async def list_hooks(conn: asyncpg.Connection) -> list[StoredHook]:
    rows = await conn.fetch(f'SELECT {HOOK_COLUMNS} FROM hooks ORDER BY name COLLATE "C"')
    return [
        StoredHook(name, source, loads(spec), sealed, at) for name, source, spec, sealed, at in rows
    ]


async def put_hook(conn: asyncpg.Connection, hook: StoredHook, create: bool) -> bool:
    if create:
        tag = await conn.execute(
            f"INSERT INTO hooks ({HOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (name) DO NOTHING",
            hook.name,
            hook.source,
            dumps(hook.spec),
            hook.sealed,
            hook.updated_at,
        )
    else:
        tag = await conn.execute(
            "UPDATE hooks SET spec = $1, sealed = $2, updated_at = $3"
            " WHERE name = $4 AND source = $5",
            dumps(hook.spec),
            hook.sealed,
            hook.updated_at,
            hook.name,
            hook.source,
        )
    return await _changed(conn, tag)


async def delete_hook(conn: asyncpg.Connection, name: str, at: float) -> int | None:
    if count_of(await conn.execute("DELETE FROM hooks WHERE name = $1", name)) == 0:
        return None
    await conn.execute("DELETE FROM hook_states WHERE hook = $1", name)
    await conn.execute("DELETE FROM hook_streaks WHERE hook = $1", name)
    cancelled = count_of(await conn.execute(CANCEL, at, name))
    await bump(conn)
    return cancelled


async def list_relays(conn: asyncpg.Connection) -> list[StoredRelay]:
    rows = await conn.fetch(f'SELECT {RELAY_COLUMNS} FROM relays ORDER BY name COLLATE "C"')
    return [StoredRelay(*row) for row in rows]


async def create_relay(conn: asyncpg.Connection, relay: StoredRelay) -> bool:
    tag = await conn.execute(
        f"INSERT INTO relays ({RELAY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (name) DO NOTHING",
        relay.name,
        relay.connector,
        relay.source,
        relay.sealed,
        relay.created_at,
        relay.updated_at,
        relay.expect,
    )
    return await _changed(conn, tag)


async def update_relay(conn: asyncpg.Connection, name: str, sealed: str, at: float) -> bool:
    tag = await conn.execute(
        "UPDATE relays SET sealed = $1, updated_at = $2 WHERE name = $3", sealed, at, name
    )
    return await _changed(conn, tag)


async def set_relay_expect(
    conn: asyncpg.Connection, name: str, expect: str | None, at: float
) -> bool:
    tag = await conn.execute(
        "UPDATE relays SET expect = $1, updated_at = $2 WHERE name = $3", expect, at, name
    )
    return await _changed(conn, tag)


async def delete_relay(conn: asyncpg.Connection, name: str) -> bool:
    return await _changed(conn, await conn.execute("DELETE FROM relays WHERE name = $1", name))


async def _changed(conn: asyncpg.Connection, tag: str) -> bool:
    """Whether the command changed a row; if it did, the version moves with it."""
    if count_of(tag) == 0:
        return False
    await bump(conn)
    return True


async def reseal(conn: asyncpg.Connection, changes: Sequence[Resealed], announce: bool) -> int:
    written = 0
    for change in changes:
        table = "relays" if change.kind == "relay" else "hooks"
        written += count_of(
            await conn.execute(
                f"UPDATE {table} SET sealed = $1 WHERE name = $2 AND sealed = $3",
                change.new,
                change.name,
                change.old,
            )
        )
    if announce:
        await bump(conn)
    return written
