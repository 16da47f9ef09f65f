"""The package as a user gets it: the pure core imports no I/O library (the import-linter
contracts in pyproject.toml say which)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from servers import (
    RelayConfig,
)

PROJECT = Path(__file__).resolve().parents[1]
# What a build reads; copied out so that setuptools' build/ never lands (or goes stale) in the
# checkout.
SOURCES = ("pyproject.toml", "README.md", "relayhook", "connectors", "templates")
# Each top-level folder and where the wheel carries it (pyproject.toml [tool.setuptools]).
SHIPPED = {"relayhook": "relayhook", "connectors": "relayhook/_shipped/connectors",
           "templates": "relayhook/_shipped/templates"}
GMETRI = RelayConfig("gmetri", "gmetri", "tok-installed-gmetri-0001", "relay-user:pa55-w0rd-0123")
BUILD_TIMEOUT = 120.0  # the build fetches setuptools and the install the dependencies (cached)


def test_importing_the_pure_core_loads_no_io_library() -> None:
    code = ("import relayhook.routing, relayhook.retry, relayhook.outbound, sys; "
            "print(sorted({'sqlite3', 'aiohttp', 'starlette', 'httpx', 'uvicorn'}"
            " & sys.modules.keys()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=True)
    assert done.stdout.strip() == "[]"
