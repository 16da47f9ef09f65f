"""Erasing a person in SQLite (relayhook.core.erasure): in one write transaction, with
`secure_delete` on, events about the person go with their deliveries and attempts, and every
other occurrence is written over; then `wipe` rebuilds the file (VACUUM) and empties the WAL,
so that no old copy of a page keeps the value."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from relayhook.core.erasure import TABLES, Found, Subject

WIPE_TRIES = 50


def erase(conn: sqlite3.Connection, subject: Subject) -> Found:
    conn.execute("PRAGMA secure_delete = ON")
    deleted = _delete_subject(conn, subject)
    scrubbed = {}
    for table, keys, columns in TABLES:
        scrubbed[table] = _scrub_table(conn, subject, table, keys, columns)
    return Found(deleted, scrubbed)


def _delete_subject(conn: sqlite3.Connection, subject: Subject) -> dict[str, int]:
    """The events whose subject is the person, their deliveries and attempts."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS erased_events (id TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM erased_events")
    conn.execute(
        "INSERT INTO erased_events SELECT id FROM events WHERE lower(trim(subject)) = ?",
        (subject.value.lower(),),
    )
    deliveries = "SELECT id FROM deliveries WHERE event_id IN (SELECT id FROM erased_events)"
    counts = {
        "attempts": conn.execute(
            f"DELETE FROM attempts WHERE delivery_id IN ({deliveries})"
        ).rowcount,
        "problem_deliveries": conn.execute(
            f"DELETE FROM problem_deliveries WHERE delivery_id IN ({deliveries})"
        ).rowcount,
        "deliveries": conn.execute(
            "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM erased_events)"
        ).rowcount,
        "events": conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM erased_events)"
        ).rowcount,
    }
    conn.execute("DELETE FROM erased_events")
    return counts


def _scrub_table(
    conn: sqlite3.Connection,
    subject: Subject,
    table: str,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
) -> int:
    needles = subject.needles()
    where = " OR ".join(f"instr(lower(CAST({c} AS TEXT)), ?) > 0" for c in columns for _ in needles)
    sql = f"SELECT {', '.join(keys + columns)} FROM {table} WHERE {where}"
    rows = conn.execute(sql, [n for _ in columns for n in needles]).fetchall()
    changed = 0
    for row in rows:
        key, values = row[: len(keys)], row[len(keys) :]
        updates = {
            c: new
            for c, v in zip(columns, values, strict=True)
            if (new := subject.scrub(v)) is not None
        }
        if updates:
            sets = ", ".join(f"{c} = ?" for c in updates)
            match = " AND ".join(f"{k} = ?" for k in keys)
            conn.execute(f"UPDATE {table} SET {sets} WHERE {match}", [*updates.values(), *key])
            changed += 1
    return changed


def wipe(path: Path) -> None:
    """Rebuild the database file without its free space and old page copies (VACUUM), then
    write the WAL back and cut it to nothing. Retried while other connections are busy."""
    with contextlib.closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as conn:
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("VACUUM")
        for _ in range(WIPE_TRIES):  # bounded: a reader's open snapshot holds it back
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.1)
