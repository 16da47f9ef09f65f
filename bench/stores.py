"""The store a benchmark run's server uses, fresh for every run: the SQLite file in the run's
folder, or, for a `postgresql://` URL, a new database on that server (created here, dropped
after the run), so that runs never see each other's rows.

    store = RunStore("postgresql://postgres@127.0.0.1:5432/postgres", folder)
    store.url          # what goes in [storage] url
    store.query("SELECT count(*) FROM events")
    store.drop()
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "sqlite:///relayhook.db"


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("postgresql", "postgres")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _execute(url: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncpg  # only for PostgreSQL runs

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


class RunStore:
    def __init__(self, base_url: str, folder: Path) -> None:
        self.base_url = base_url
        self.folder = folder
        if not is_postgres(base_url):
            self.url = base_url
            self.name = None
            return
        self.name = f"relayhook_bench_{os.getpid()}_{secrets.token_hex(4)}"
        asyncio.run(_execute(base_url, f'CREATE DATABASE "{self.name}"'))
        self.url = _with_database(base_url, self.name)

    @property
    def engine(self) -> str:
        return "postgresql" if self.name else "sqlite"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of `sql` (run it once the server has stopped, or read-only while it runs)."""
        if self.name:
            return asyncio.run(_execute(self.url, sql))
        path = self.folder / self.url.split(":///", 1)[1]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return list(db.execute(sql))

    def drop(self) -> None:
        if self.name:
            asyncio.run(
                _execute(self.base_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            )
            self.name = None
