"""People, their one-time links, API keys and the audit log on PostgreSQL: the same contract
as relayhook.store.sqlite.people (rows read by relayhook.store.people_rows)."""

from __future__ import annotations

import json

import asyncpg

from relayhook.core.people import Account, ApiKey, AuditEntry
from relayhook.store.people_rows import (
    ACCOUNT,
    AUDIT,
    KEY,
    account_of,
    audit_filters,
    audit_of,
    key_of,
)
from relayhook.store.postgres import sessions
from relayhook.store.postgres.deliveries import count_of


def _numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2..."""
    parts = sql.split("?")
    return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, 1))


async def save_account(
    conn: asyncpg.Connection, a: Account, end_sessions: bool, keep: str | None
) -> int:
    await conn.execute(
        f"INSERT INTO accounts ({ACCOUNT}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT"
        " (id) DO UPDATE SET name = excluded.name, email = excluded.email, role = excluded.role,"
        " password_hash = excluded.password_hash, disabled_at = excluded.disabled_at",
        a.id,
        a.name,
        a.email,
        a.role,
        a.password_hash,
        a.created_at,
        a.disabled_at,
        a.origin,
    )
    return await sessions.revoke_all(conn, a.id, keep) if end_sessions else 0


async def get_account(conn: asyncpg.Connection, account_id: str) -> Account | None:
    row = await conn.fetchrow(f"SELECT {ACCOUNT} FROM accounts WHERE id = $1", account_id)
    return None if row is None else account_of(tuple(row))


async def find_account(conn: asyncpg.Connection, email: str) -> Account | None:
    row = await conn.fetchrow(
        f"SELECT {ACCOUNT} FROM accounts WHERE lower(email) = lower($1)"
        " ORDER BY created_at LIMIT 1",
        email,
    )
    return None if row is None else account_of(tuple(row))


async def list_accounts(conn: asyncpg.Connection) -> list[Account]:
    rows = await conn.fetch(f"SELECT {ACCOUNT} FROM accounts ORDER BY created_at, id")
    return [account_of(tuple(row)) for row in rows]


async def create_link(
    conn: asyncpg.Connection, token_hash: str, account: str, expires: float
) -> None:
    await conn.execute(
        "INSERT INTO account_links (token_hash, account, expires_at) VALUES ($1, $2, $3)",
        token_hash,
        account,
        expires,
    )


async def peek_link(conn: asyncpg.Connection, token_hash: str, now: float) -> str | None:
    value = await conn.fetchval(
        "SELECT account FROM account_links WHERE token_hash = $1 AND"
        " used_at IS NULL AND expires_at > $2",
        token_hash,
        now,
    )
    return None if value is None else str(value)


async def use_link(conn: asyncpg.Connection, token_hash: str, now: float) -> str | None:
    value = await conn.fetchval(
        "UPDATE account_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND"
        " expires_at > $2 RETURNING account",
        token_hash,
        now,
    )
    return None if value is None else str(value)


async def create_key(conn: asyncpg.Connection, key: ApiKey, token_hash: str) -> None:
    await conn.execute(
        f"INSERT INTO api_keys ({KEY}, token_hash) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        key.id,
        key.name,
        key.role,
        key.created_by,
        key.created_at,
        key.expires_at,
        json.dumps(list(key.relays)),
        json.dumps(list(key.hooks)),
        key.last_used_at,
        key.revoked_at,
        token_hash,
    )


async def find_key(conn: asyncpg.Connection, token_hash: str) -> ApiKey | None:
    row = await conn.fetchrow(f"SELECT {KEY} FROM api_keys WHERE token_hash = $1", token_hash)
    return None if row is None else key_of(tuple(row))


async def list_keys(conn: asyncpg.Connection) -> list[ApiKey]:
    rows = await conn.fetch(f"SELECT {KEY} FROM api_keys ORDER BY created_at DESC, id")
    return [key_of(tuple(row)) for row in rows]


async def revoke_key(conn: asyncpg.Connection, key_id: str, at: float) -> bool:
    return (
        count_of(
            await conn.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                at,
                key_id,
            )
        )
        == 1
    )


async def touch_key(conn: asyncpg.Connection, key_id: str, at: float) -> None:
    await conn.execute(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND"
        " (last_used_at IS NULL OR last_used_at < $1)",
        at,
        key_id,
    )


async def append_audit(conn: asyncpg.Connection, e: AuditEntry) -> None:
    await conn.execute(
        "INSERT INTO audit_log (at, actor, actor_name, address, action, target, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        e.at,
        e.actor,
        e.actor_name,
        e.address,
        e.action,
        e.target,
        json.dumps(e.detail),
    )


async def list_audit(
    conn: asyncpg.Connection,
    actor: str | None,
    action: str | None,
    target: str | None,
    since: float | None,
    before: int | None,
    limit: int,
) -> list[AuditEntry]:
    where, params = audit_filters(actor, action, target, since, before)
    sql = _numbered(f"SELECT {AUDIT} FROM audit_log {where} ORDER BY id DESC LIMIT ?")
    rows = await conn.fetch(sql, *params, limit)
    return [audit_of(tuple(row)) for row in rows]


async def prune_audit(conn: asyncpg.Connection, before: float, batch: int) -> int:
    return count_of(
        await conn.execute(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
            before,
            batch,
        )
    )
