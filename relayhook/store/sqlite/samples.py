"""Saved samples in SQLite (schema version 9): a copy of a request or event under a name.

No reference to `requests` or `events`: retention deletes those, a sample stays."""

from __future__ import annotations

import sqlite3

from relayhook.core.records import Sample
from relayhook.core.samples import sample_from_payload, sample_payload
from relayhook.store.sqlite.rows import Row
from relayhook.store.text import dumps, from_column, loads, to_column

SCHEMA_9 = """
CREATE TABLE IF NOT EXISTS samples (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('request', 'event')),
    source_id   TEXT NOT NULL,  -- the pinned request's or event's id
    payload     TEXT NOT NULL,  -- JSON: relayhook.core.samples.sample_payload
    saved_at    REAL NOT NULL
);
"""

COLUMNS = "name, kind, source_id, payload, saved_at"


def save(conn: sqlite3.Connection, sample: Sample, replace: bool) -> bool:
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    row = (
        sample.name,
        sample.kind,
        to_column(sample.source_id),
        dumps(sample_payload(sample)),
        sample.saved_at,
    )
    return (
        conn.execute(f"{verb} INTO samples ({COLUMNS}) VALUES (?, ?, ?, ?, ?)", row).rowcount == 1
    )


def to_sample(row: Row) -> Sample:
    name, kind, source_id, payload, saved_at = row
    return sample_from_payload(name, kind, from_column(source_id), loads(payload), saved_at)


def get(conn: sqlite3.Connection, name: str) -> Sample | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM samples WHERE name = ?", (name,)).fetchone()
    return None if row is None else to_sample(row)


def list_all(conn: sqlite3.Connection) -> list[Sample]:
    return [to_sample(row) for row in conn.execute(f"SELECT {COLUMNS} FROM samples ORDER BY name")]


def delete(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM samples WHERE name = ?", (name,)).rowcount == 1
