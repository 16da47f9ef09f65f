from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import RelayhookProcess, StartServer

from relayhook.store import SQLiteStore, Store

StoreFactory = Callable[[], Store]
ENGINES = ["sqlite"]  # an engine joins by adding a param here and a branch to `new_store`


@pytest.fixture(params=ENGINES)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Unopened stores over one database, so that a test can close it and open it again."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "relayhook.db")
    raise NotImplementedError(request.param)


@pytest.fixture
def store(new_store: StoreFactory) -> Iterator[Store]:
    """An opened store of each engine, closed at teardown."""
    store = new_store()
    asyncio.run(store.open())
    yield store
    asyncio.run(store.close())


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
