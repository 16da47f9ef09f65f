"""Saved samples on PostgreSQL: the same contract as relayhook.store.sqlite.samples (its table:
migration 6 in relayhook.store.postgres.schema)."""

from __future__ import annotations

import asyncpg

from relayhook.core.records import Sample
from relayhook.core.samples import sample_from_payload, sample_payload
from relayhook.store.postgres.deliveries import count_of
from relayhook.store.text import dumps, from_column, loads, to_column

COLUMNS = "name, kind, source_id, payload, saved_at"


async def save(conn: asyncpg.Connection, sample: Sample, replace: bool) -> bool:
    conflict = (
        "DO UPDATE SET kind = excluded.kind, source_id = excluded.source_id,"
        " payload = excluded.payload, saved_at = excluded.saved_at"
        if replace
        else "DO NOTHING"
    )
    sql = (
        f"INSERT INTO samples ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) {conflict}"
    )
    return (
        count_of(
            await conn.execute(
                sql,
                sample.name,
                sample.kind,
                to_column(sample.source_id),
                dumps(sample_payload(sample)),
                sample.saved_at,
            )
        )
        == 1
    )


def to_sample(row: asyncpg.Record) -> Sample:
    name, kind, source_id, payload, saved_at = row
    return sample_from_payload(name, kind, from_column(source_id), loads(payload), saved_at)


async def get(conn: asyncpg.Connection, name: str) -> Sample | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM samples WHERE name = $1", name)
    return None if row is None else to_sample(row)


async def list_all(conn: asyncpg.Connection) -> list[Sample]:
    return [
        to_sample(row)
        for row in await conn.fetch(f'SELECT {COLUMNS} FROM samples ORDER BY name COLLATE "C"')
    ]


async def delete(conn: asyncpg.Connection, name: str) -> bool:
    return count_of(await conn.execute("DELETE FROM samples WHERE name = $1", name)) == 1
