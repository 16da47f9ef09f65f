from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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
