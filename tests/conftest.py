from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres import TestDatabase
from servers import RelayhookProcess, StartServer


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
