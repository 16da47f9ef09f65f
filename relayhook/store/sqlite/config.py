"""The live configuration in SQLite: relays and hooks created at run time, hook states, and the
config version every process polls to know when to read them again.

Every writing function is a job for the writer thread and moves the version in the same
transaction as its change, so a process that reads the new version reads the change with it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from relayhook.store.base import Resealed, StoredHook, StoredRelay
from relayhook.store.sqlite.rows import dumps

BUMP_VERSION = "UPDATE config_version SET version = version + 1 WHERE id = 1"
HOOK_COLUMNS = "name, source, spec, sealed, updated_at"
RELAY_COLUMNS = "name, connector, source, sealed, created_at, updated_at, expect"
CANCEL = (
    "UPDATE deliveries SET status = 'cancelled', lease_until = NULL, lease_owner = NULL,"
    " last_error = 'its hook was deleted', updated_at = ?"
    " WHERE hook = ? AND status IN ('pending', 'failed', 'claimed', 'paused')"
)


def config_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT version FROM config_version WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def bump(conn: sqlite3.Connection) -> None:
    conn.execute(BUMP_VERSION)


# -- hooks


def save_hooks(
    conn: sqlite3.Connection, source: str, specs: Mapping[str, dict[str, Any]], at: float
) -> None:
    rows = [(name, source, dumps(spec), at) for name, spec in specs.items()]
    conn.execute("DELETE FROM hooks WHERE source = ?", (source,))
    conn.executemany(
        "INSERT INTO hooks (name, source, spec, sealed, updated_at) VALUES (?, ?, ?, NULL, ?)"
        " ON CONFLICT (name) DO UPDATE SET source = excluded.source, spec = excluded.spec,"
        " sealed = NULL, updated_at = excluded.updated_at",
        rows,
    )
    bump(conn)


def list_hooks(conn: sqlite3.Connection) -> list[StoredHook]:
    rows = conn.execute(f"SELECT {HOOK_COLUMNS} FROM hooks ORDER BY name")
    return [
        StoredHook(name, source, json.loads(spec), sealed, at)
        for name, source, spec, sealed, at in rows
    ]


def put_hook(conn: sqlite3.Connection, hook: StoredHook, create: bool) -> bool:
    values = (dumps(hook.spec), hook.sealed, hook.updated_at, hook.name, hook.source)
    if create:
        cursor = conn.execute(
            f"INSERT INTO hooks ({HOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO NOTHING",
            (hook.name, hook.source, values[0], hook.sealed, hook.updated_at),
        )
    else:
        cursor = conn.execute(
            "UPDATE hooks SET spec = ?, sealed = ?, updated_at = ? WHERE name = ? AND source = ?",
            values,
        )
    if cursor.rowcount == 0:
        return False
    bump(conn)
    return True


def delete_hook(conn: sqlite3.Connection, name: str, at: float) -> int | None:
    if conn.execute("DELETE FROM hooks WHERE name = ?", (name,)).rowcount == 0:
        return None
    conn.execute("DELETE FROM hook_states WHERE hook = ?", (name,))
    conn.execute("DELETE FROM hook_streaks WHERE hook = ?", (name,))
    cancelled: int = conn.execute(CANCEL, (at, name)).rowcount
    bump(conn)
    return cancelled


# -- relays


def list_relays(conn: sqlite3.Connection) -> list[StoredRelay]:
    rows = conn.execute(f"SELECT {RELAY_COLUMNS} FROM relays ORDER BY name")
    return [StoredRelay(*row) for row in rows]


def create_relay(conn: sqlite3.Connection, relay: StoredRelay) -> bool:
    cursor = conn.execute(
        f"INSERT INTO relays ({RELAY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO NOTHING",
        (
            relay.name,
            relay.connector,
            relay.source,
            relay.sealed,
            relay.created_at,
            relay.updated_at,
            relay.expect,
        ),
    )
    if cursor.rowcount == 0:
        return False
    bump(conn)
    return True


def update_relay(conn: sqlite3.Connection, name: str, sealed: str, at: float) -> bool:
    cursor = conn.execute(
        "UPDATE relays SET sealed = ?, updated_at = ? WHERE name = ?", (sealed, at, name)
    )
    if cursor.rowcount == 0:
        return False
    bump(conn)
    return True


def set_relay_expect(conn: sqlite3.Connection, name: str, expect: str | None, at: float) -> bool:
    cursor = conn.execute(
        "UPDATE relays SET expect = ?, updated_at = ? WHERE name = ?", (expect, at, name)
    )
    if cursor.rowcount == 0:
        return False
    bump(conn)
    return True


def delete_relay(conn: sqlite3.Connection, name: str) -> bool:
    if conn.execute("DELETE FROM relays WHERE name = ?", (name,)).rowcount == 0:
        return False
    bump(conn)
    return True


def reseal(conn: sqlite3.Connection, changes: Sequence[Resealed], announce: bool) -> int:
    written = 0
    for change in changes:
        table = "relays" if change.kind == "relay" else "hooks"
        written += conn.execute(
            f"UPDATE {table} SET sealed = ? WHERE name = ? AND sealed = ?",
            (change.new, change.name, change.old),
        ).rowcount
    if announce:
        bump(conn)
    return written
