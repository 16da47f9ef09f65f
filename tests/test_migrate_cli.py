"""`relayhook migrate` and `relayhook serve --no-migrate`, on both engines."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path

import pytest
from postgres import query
from servers import RelayConfig, RelayhookProcess, ServerStartError, render_config
from test_store import version_1_database

from relayhook.cli import main
from relayhook.store.postgres import schema as pg_schema
from relayhook.store.sqlite import schema as sqlite_schema

RELAY = RelayConfig("gen", "generic", "tok-migrate-0123456789")


def migrate(config: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--config", str(config), "migrate", *args], out=out)
    return code, out.getvalue()


def write_config(tmp_path: Path, storage_url: str) -> Path:
    path = tmp_path / "relayhook.toml"
    path.write_text(render_config(relays=[RELAY], storage_url=storage_url), encoding="utf-8")
    return path


def test_sqlite_migrate_check_then_apply_then_up_to_date(tmp_path: Path) -> None:
    version_1_database(tmp_path / "relayhook.db")
    config = write_config(tmp_path, "sqlite:///relayhook.db")

    assert migrate(config, "--check")[0] == 1
    code, printed = migrate(config)
    assert code == 0
    assert f"applied migration {sqlite_schema.LATEST} (" in printed
    assert f"schema version {sqlite_schema.LATEST}, migrated" in printed
    assert migrate(config, "--check") == (0, f"schema version {sqlite_schema.LATEST}, up to date\n")
    with contextlib.closing(sqlite3.connect(tmp_path / "relayhook.db")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_schema.LATEST


def test_postgres_migrate_from_empty(tmp_path: Path, postgres_url: str) -> None:
    config = write_config(tmp_path, postgres_url)
    assert migrate(config, "--check")[0] == 1
    code, printed = migrate(config)
    assert code == 0 and printed.count("applied migration") == pg_schema.LATEST
    assert query(postgres_url, "SELECT max(version) FROM schema_migrations") == [
        (pg_schema.LATEST,)
    ]


@pytest.mark.slow
def test_serve_no_migrate_refuses_a_database_behind_and_serve_migrates(tmp_path: Path) -> None:
    version_1_database(tmp_path / "relayhook.db")
    config = render_config(relays=[RELAY])
    with pytest.raises(ServerStartError, match="relayhook migrate"):
        RelayhookProcess(tmp_path, config, extra_args=["--no-migrate"]).start()
    with RelayhookProcess(tmp_path, config):
        pass
    with contextlib.closing(sqlite3.connect(tmp_path / "relayhook.db")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_schema.LATEST
