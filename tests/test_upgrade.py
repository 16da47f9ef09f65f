"""The upgrade path (issue 22, item 5; README: Upgrade) from the previous release's store, on both
engines: tests/fixtures/upgrade holds a store made by that release (make_fixtures.py: SQL dumps at
its LATEST schema, with traffic, a relay and a hook created through the API, sealed secrets).
The current code migrates it (`relayhook migrate`, then `migrate --check` passes), serves it
with --no-migrate, and finds everything: the requests, the run-time relay (its sealed secret
still authenticates a provider), the hook.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers import RelayhookProcess, clean_env, http_client

from relayhook.store.postgres import schema as pg_schema
from relayhook.store.sqlite import schema as sqlite_schema

FIXTURES = Path(__file__).parent / "fixtures" / "upgrade"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
AUTH = {"Authorization": "Bearer admin-token-upgrade-0123456789abcdef"}


def relayhook(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        check=False,
        cwd=config.parent,
    )


def sqlite_store(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(folder / "relayhook.db") as conn:
        conn.executescript((FIXTURES / "sqlite.sql").read_text(encoding="utf-8"))
    return "sqlite:///relayhook.db"


def postgres_store(url: str) -> str:
    subprocess.run(
        [
            "psql",
            "--quiet",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            str(FIXTURES / "postgres.sql"),
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env=clean_env(),
    )
    return url


def upgrade_and_serve(
    folder: Path, storage_url: str, expected: dict[str, Any], latest: int
) -> None:
    config = (FIXTURES / "relayhook.toml").read_text(encoding="utf-8")
    server = RelayhookProcess(
        folder, config.replace("STORAGE_URL", storage_url), extra_args=["--no-migrate"]
    )
    assert server.config_path is not None
    assert expected["schema_version"] <= latest
    pending = latest > expected["schema_version"]
    assert relayhook(server.config_path, "migrate", "--check").returncode == (1 if pending else 0)
    migrated = relayhook(server.config_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema version {latest}," in migrated.stdout
    checked = relayhook(server.config_path, "migrate", "--check")
    assert checked.returncode == 0, checked.stderr

    relay = expected["relay"]
    with server, http_client(base_url=server.url, headers=AUTH) as client:
        items = client.get("/api/requests", params={"limit": 100}).json()["items"]
        assert {item["id"] for item in items} == set(expected["request_ids"])
        relays = {r["name"] for r in client.get("/api/relays").json()["items"]}
        assert relay["name"] in relays
        hooks = {h["name"] for h in client.get("/api/hooks").json()["items"]}
        assert {expected["hook"], "catch-all"} <= hooks
        # The run-time relay's sealed secret still opens: a provider still gets in with it...
        sent = client.post(
            f"/in/{relay['token']}",
            json={"event": "level.completed", "player": "after-upgrade"},
            headers={"X-Relay-Secret": relay["secret"]},
        )
        assert sent.status_code == 200, sent.text
        # ... and not without it.
        refused = client.post(
            f"/in/{relay['token']}",
            json={"event": "level.completed"},
            headers={"X-Relay-Secret": "wrong-secret-0123456789"},
        )
        assert refused.status_code == 401


def test_upgrade_a_sqlite_store_of_the_previous_release(tmp_path: Path) -> None:
    url = sqlite_store(tmp_path / "server")
    upgrade_and_serve(tmp_path / "server", url, EXPECTED["sqlite"], sqlite_schema.LATEST)


def test_upgrade_a_postgres_store_of_the_previous_release(
    tmp_path: Path, postgres_url: str
) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql is missing (Debian: postgresql-client)")
    url = postgres_store(postgres_url)
    upgrade_and_serve(tmp_path / "server", url, EXPECTED["postgres"], pg_schema.LATEST)
