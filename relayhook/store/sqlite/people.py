"""People, their one-time links, API keys and the audit log on SQLite (the tables: the
"people" migration in relayhook.store.sqlite.schema). Each function runs on one connection:
reads on a reader, changes as a job of the writer thread."""

from __future__ import annotations

import json
import sqlite3

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
from relayhook.store.sqlite import sessions


def save_account(conn: sqlite3.Connection, a: Account, end_sessions: bool, keep: str | None) -> int:
    conn.execute(
        f"INSERT INTO accounts ({ACCOUNT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO"
        " UPDATE SET name = excluded.name, email = excluded.email, role = excluded.role,"
        " password_hash = excluded.password_hash, disabled_at = excluded.disabled_at",
        (a.id, a.name, a.email, a.role, a.password_hash, a.created_at, a.disabled_at, a.origin),
    )
    return sessions.revoke_all(conn, a.id, keep) if end_sessions else 0


def get_account(conn: sqlite3.Connection, account_id: str) -> Account | None:
    row = conn.execute(f"SELECT {ACCOUNT} FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return None if row is None else account_of(row)


def find_account(conn: sqlite3.Connection, email: str) -> Account | None:
    row = conn.execute(
        f"SELECT {ACCOUNT} FROM accounts WHERE lower(email) = lower(?) ORDER BY created_at LIMIT 1",
        (email,),
    ).fetchone()
    return None if row is None else account_of(row)


def list_accounts(conn: sqlite3.Connection) -> list[Account]:
    rows = conn.execute(f"SELECT {ACCOUNT} FROM accounts ORDER BY created_at, id").fetchall()
    return [account_of(row) for row in rows]


def create_link(conn: sqlite3.Connection, token_hash: str, account: str, expires: float) -> None:
    conn.execute(
        "INSERT INTO account_links (token_hash, account, expires_at) VALUES (?, ?, ?)",
        (token_hash, account, expires),
    )


def peek_link(conn: sqlite3.Connection, token_hash: str, now: float) -> str | None:
    row = conn.execute(
        "SELECT account FROM account_links WHERE token_hash = ? AND used_at IS"
        " NULL AND expires_at > ?",
        (token_hash, now),
    ).fetchone()
    return None if row is None else str(row[0])


def use_link(conn: sqlite3.Connection, token_hash: str, now: float) -> str | None:
    account = peek_link(conn, token_hash, now)
    if account is not None:
        conn.execute("UPDATE account_links SET used_at = ? WHERE token_hash = ?", (now, token_hash))
    return account


def create_key(conn: sqlite3.Connection, key: ApiKey, token_hash: str) -> None:
    conn.execute(
        f"INSERT INTO api_keys ({KEY}, token_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
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
        ),
    )


def find_key(conn: sqlite3.Connection, token_hash: str) -> ApiKey | None:
    row = conn.execute(f"SELECT {KEY} FROM api_keys WHERE token_hash = ?", (token_hash,)).fetchone()
    return None if row is None else key_of(row)


def list_keys(conn: sqlite3.Connection) -> list[ApiKey]:
    rows = conn.execute(f"SELECT {KEY} FROM api_keys ORDER BY created_at DESC, id").fetchall()
    return [key_of(row) for row in rows]


def revoke_key(conn: sqlite3.Connection, key_id: str, at: float) -> bool:
    changed: int = conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id)
    ).rowcount
    return changed == 1


def touch_key(conn: sqlite3.Connection, key_id: str, at: float) -> None:
    conn.execute(
        "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL"
        " OR last_used_at < ?)",
        (at, key_id, at),
    )


def append_audit(conn: sqlite3.Connection, e: AuditEntry) -> None:
    conn.execute(
        "INSERT INTO audit_log (at, actor, actor_name, address, action, target, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (e.at, e.actor, e.actor_name, e.address, e.action, e.target, json.dumps(e.detail)),
    )


def list_audit(
    conn: sqlite3.Connection,
    actor: str | None,
    action: str | None,
    target: str | None,
    since: float | None,
    before: int | None,
    limit: int,
) -> list[AuditEntry]:
    where, params = audit_filters(actor, action, target, since, before)
    rows = conn.execute(
        f"SELECT {AUDIT} FROM audit_log {where} ORDER BY id DESC LIMIT ?", [*params, limit]
    ).fetchall()
    return [audit_of(row) for row in rows]


def prune_audit(conn: sqlite3.Connection, before: float, batch: int) -> int:
    deleted: int = conn.execute(
        "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ? LIMIT ?)",
        (before, batch),
    ).rowcount
    return deleted
