"""The package as a user gets it: the wheel installs and works outside the checkout, and the pure
core imports no I/O library (the import-linter contracts in pyproject.toml say which)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from receiver import Receiver
from servers import (
    RelayConfig,
    RelayhookProcess,
    clean_env,
    http_client,
    render_config,
    render_hooks,
    render_tables,
)

PROJECT = Path(__file__).resolve().parents[1]
# What a build reads; copied out so that setuptools' build/ never lands (or goes stale) in the
# checkout.
SOURCES = ("pyproject.toml", "README.md", "relayhook", "connectors", "presets", "deploy")
# Each top-level folder and where the wheel carries it (pyproject.toml [tool.setuptools]).
SHIPPED = {
    "relayhook": "relayhook",
    "connectors": "relayhook/_shipped/connectors",
    "presets": "relayhook/_shipped/presets",
    "deploy": "relayhook/_shipped/deploy",
}
GMETRI = RelayConfig("gmetri", "gmetri", "tok-installed-gmetri-0001", "relay-user:pa55-w0rd-0123")
BUILD_TIMEOUT = 120.0  # the build fetches setuptools and the install the dependencies (cached)


def test_importing_the_pure_core_loads_no_io_library() -> None:
    code = (
        "import relayhook.core.routing, relayhook.core.retry, relayhook.core.outbound, sys; "
        "print(sorted({'sqlite3', 'aiohttp', 'starlette', 'httpx', 'uvicorn'}"
        " & sys.modules.keys()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "[]"


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=_outside_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _outside_env() -> dict[str, str]:
    # Nothing of the checkout on the path, only what was installed (Python ignores an empty one).
    return clean_env(PYTHONPATH="")


def _shipped_files() -> set[str]:
    """Every file of the checkout that the wheel must carry, as the wheel names it."""
    names = set()
    for folder, inside_wheel in SHIPPED.items():
        for path in (PROJECT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                names.add(f"{inside_wheel}/{path.relative_to(PROJECT / folder).as_posix()}")
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (PROJECT / name).is_dir():
            shutil.copytree(
                PROJECT / name,
                source / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
        else:
            shutil.copy2(PROJECT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, source)
    [built] = dist.glob("relayhook-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A new venv with the wheel and its declared dependencies, nothing else."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    # This interpreter's pip installs into the new venv: no pip of its own to set up there.
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--quiet",
        wheel,
    )
    return venv


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with no connectors/, templates/ or relayhook/ to find by accident."""
    return tmp_path_factory.mktemp("elsewhere")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.mark.slow
def test_the_wheel_carries_every_file_of_the_package_and_the_shipped_folders(
    wheel: Path,
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        missing = _shipped_files() - set(archive.namelist())

    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools]): {sorted(missing)}"


@pytest.mark.slow
def test_installed_relayhook_maps_the_shipped_example_from_outside_the_checkout(
    venv: Path, outside: Path
) -> None:
    where = _run(
        venv / "bin" / "python",
        "-c",
        "import relayhook._shipped as s; print(s.shipped_dir('connectors'))",
        cwd=outside,
    )
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel's copy, not the checkout

    printed = _run(venv / "bin" / "relayhook", "map", "gmetri", cwd=outside)

    events = [json.loads(line) for line in printed.splitlines()]
    assert len(events) == 4
    assert {event["type"] for event in events} == {"gmetri.rule.triggered"}


@pytest.mark.slow
def test_installed_relayhook_serves_a_relay_and_delivers_through_a_shipped_preset(
    venv: Path, outside: Path, receiver: Receiver
) -> None:
    hook = {
        "name": "to-zapier",
        "events": ["gmetri.*"],
        "preset": "zapier",
        "url": receiver.url + "/zapier/",
        "retry": {"schedule": [0], "jitter": 0},
    }
    config = (
        render_config(relays=[GMETRI])
        + render_tables(delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1})
        + render_hooks([hook])
    )
    body = (PROJECT / "connectors" / "examples" / "gmetri-rules.json").read_bytes()
    user, password = GMETRI.secret.split(":", 1)
    program = [str(venv / "bin" / "relayhook")]

    with RelayhookProcess(
        outside / "serve", config, program=program, env={"PYTHONPATH": ""}
    ) as server:
        with http_client(base_url=server.url) as client:
            response = client.post(
                f"/in/{GMETRI.token}",
                content=body,
                auth=(user, password),
                headers={"Content-Type": "application/json"},
            )
        delivered = receiver.wait_for(4, timeout=15, path="/zapier/")

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 4
    # The zapier preset's flat body: proof that the presets shipped too.
    assert {json.loads(r.body)["event_type"] for r in delivered} == {"gmetri.rule.triggered"}
