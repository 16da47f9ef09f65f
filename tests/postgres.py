"""PostgreSQL for tests: the server on 127.0.0.1:5432 (trust auth), or $TEST_POSTGRES_URL.

Each test run (each pytest process) creates its own database, `relayhook_test_<pid>`, and drops
it at the end; `fresh_url()` empties it before a test, so every test starts from migration 1.
Without a server the PostgreSQL tests are skipped, except in CI (CI=true), where that is a
failure: CI must run them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import pytest

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def url_of(database: str, admin_url: str = ADMIN_URL) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + database


def on(url: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`fn(conn)` on a connection to `url`, from synchronous test code."""

    async def run() -> T:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async def fetch(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await conn.fetch(sql, *params)]

    return on(url, fetch)


class TestDatabase:
    """The run's database, created on first use."""

    def __init__(self) -> None:
        self.name = f"relayhook_test_{os.getpid()}"
        self.created = False
        self.error: str | None = None

    def url(self) -> str:
        """The database's URL, emptied; skip (fail in CI) where there is no server."""
        if self.error is None and not self.created:
            try:
                self._create()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                self.error = f"no PostgreSQL at {ADMIN_URL}: {type(exc).__name__}: {exc}"
        if self.error is not None:
            if in_ci():
                pytest.fail(f"{self.error} (CI runs every PostgreSQL test)")
            pytest.skip(self.error)
        url = url_of(self.name)
        on(url, lambda conn: conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        return url

    def _create(self) -> None:
        async def create(conn: asyncpg.Connection) -> None:
            await conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {self.name}")

        on(ADMIN_URL, create)
        self.created = True

    def drop(self) -> None:
        if self.created:
            on(
                ADMIN_URL,
                lambda conn: conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"),
            )
            self.created = False
