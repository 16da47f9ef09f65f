"""Console sessions on SQLite (the table: migration 12 in relayhook.store.sqlite.schema). Reads
take a reader connection; every change is a job for the writer thread."""

from __future__ import annotations

import sqlite3

from relayhook.store.base import ConsoleSession
from relayhook.store.sqlite.rows import Row

COLUMNS = "id, account, created_at, last_seen_at, expires_at, address, user_agent"


def _session(row: Row) -> ConsoleSession:
    id_, account, created, seen, expires, address, agent = row
    return ConsoleSession(id_, account, created, seen, expires, address, agent)


def create(conn: sqlite3.Connection, session: ConsoleSession, token_hash: str) -> None:
    conn.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (session.created_at,))
    conn.execute(
        f"INSERT INTO console_sessions ({COLUMNS}, token_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            session.id,
            session.account,
            session.created_at,
            session.last_seen_at,
            session.expires_at,
            session.address,
            session.user_agent,
            token_hash,
        ),
    )


def find(conn: sqlite3.Connection, token_hash: str, now: float) -> ConsoleSession | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM console_sessions WHERE token_hash = ? AND expires_at > ?",
        (token_hash, now),
    ).fetchone()
    return None if row is None else _session(row)


def touch(conn: sqlite3.Connection, session_id: str, at: float) -> None:
    conn.execute(
        "UPDATE console_sessions SET last_seen_at = ? WHERE id = ? AND last_seen_at < ?",
        (at, session_id, at),
    )


def list_open(conn: sqlite3.Connection, account: str | None, now: float) -> list[ConsoleSession]:
    where, params = "expires_at > ?", [now]
    if account is not None:
        where += " AND account = ?"
        params.append(account)  # type: ignore[arg-type]
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM console_sessions WHERE {where} ORDER BY last_seen_at DESC, id",
        params,
    ).fetchall()
    return [_session(row) for row in rows]


def revoke(conn: sqlite3.Connection, session_id: str) -> bool:
    deleted: int = conn.execute("DELETE FROM console_sessions WHERE id = ?", (session_id,)).rowcount
    return deleted == 1


def revoke_all(conn: sqlite3.Connection, account: str, keep: str | None) -> int:
    deleted: int = conn.execute(
        "DELETE FROM console_sessions WHERE account = ? AND id <> ?", (account, keep or "")
    ).rowcount
    return deleted
