from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from postgres import TestDatabase
from servers import RelayhookProcess, StartServer

from relayhook.store import SQLiteStore, Store

T = TypeVar("T")
StoreFactory = Callable[[], Store]
_runner: asyncio.Runner | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the test's event loop: one per test, as an asyncpg store is bound to the
    loop that opened it (SQLite's threads would not mind)."""
    global _runner
    if _runner is None:
        _runner = asyncio.Runner()
    return _runner.run(coro)


@pytest.fixture(autouse=True)
def one_loop_per_test() -> Iterator[None]:
    global _runner
    yield
    if _runner is not None:
        _runner.close()
        _runner = None


ENGINES = ["sqlite", "postgres"]  # an engine joins by adding a param here and to store_factory


def store_factory(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Unopened stores over one database, so that a test can close it and open it again."""
    if engine == "sqlite":
        return lambda: SQLiteStore(tmp_path / "relayhook.db")
    if engine == "postgres":
        from relayhook.store.postgres import PostgresStore

        url: str = request.getfixturevalue("postgres_url")
        return lambda: PostgresStore(url)
    raise NotImplementedError(engine)


@pytest.fixture(params=ENGINES)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Unopened stores over one database of each engine (the PostgreSQL one emptied)."""
    return store_factory(request.param, request, tmp_path)


@pytest.fixture
def store(new_store: StoreFactory) -> Iterator[Store]:
    """An opened store of each engine, closed at teardown."""
    store = new_store()
    run(store.open())
    yield store
    run(store.close())


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """`start_server(workdir, config_toml_or_None, **kwargs)`: a started `relayhook serve`,
    stopped (or killed) at teardown even when the test fails."""
    servers: list[RelayhookProcess] = []

    def start(workdir: Path, config: str | None, **kwargs: Any) -> RelayhookProcess:
        server = RelayhookProcess(workdir, config, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[TestDatabase]:
    """This run's PostgreSQL database (created on first use, dropped at the end)."""
    database = TestDatabase()
    yield database
    database.drop()


@pytest.fixture
def postgres_url(postgres_database: TestDatabase) -> str:
    """The URL of this run's PostgreSQL database, emptied for the test (skip without a
    server, fail in CI)."""
    return postgres_database.url()


@pytest.fixture
def web_app(tmp_path: Path) -> Iterator[Any]:
    """`web_app(relays=..., hooks=..., alerts={...})`: the app in process (tests/web.py), over
    a SQLite file in tmp_path (or `store=` an opened store of either engine), closed at
    teardown."""
    from web import web_apps

    with web_apps(tmp_path) as make:
        yield make
