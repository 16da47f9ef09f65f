"""`relayhook keys rotate` (issue 22, item 3): every stored secret sealed again with a new key
while a real server runs, on both engines; the old key opens nothing afterwards, and a rotation
SIGKILLed midway (the RELAYHOOK_TEST_KILL_AFTER_RESEALED hook), then run again, loses nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres import query
from receiver import Receiver
from servers import (
    RelayhookProcess,
    clean_env,
    http_client,
    render_config,
    render_tables,
)

from relayhook.cli.keys import KILL_AFTER
from relayhook.sealing import Sealer, SealError, read_key_file

ADMIN = "admin-token-keys-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
WAIT = 20.0
RELAYS = {f"players-{n}": f"gamify-secret-{n}-0123456789abcdef" for n in range(4)}
HOOKS = {f"crm-{n}": f"Bearer crm-token-{n}-0123456789abcdef" for n in range(2)}


def relayhook(
    config: Path, *args: str, kill_after: int | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = clean_env(**({KILL_AFTER: str(kill_after)} if kill_after is not None else {}))
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        cwd=config.parent,
        input=stdin,
    )


def rotate(config: Path, *, kill_after: int | None = None) -> subprocess.CompletedProcess[str]:
    return relayhook(
        config, "keys", "rotate", "--grace", "1", "--batch", "1", kill_after=kill_after
    )


def opened(sealer: Sealer, rows: dict[str, str]) -> dict[str, Any]:
    return {name: sealer.open(sealed) for name, sealed in rows.items()}


def opens_none(sealer: Sealer, rows: dict[str, str]) -> bool:
    for sealed in rows.values():
        with contextlib.suppress(SealError):
            sealer.open(sealed)
            return False
    return True


def rotate_killed_then_again(
    config: Path, key_path: Path, read_rows: Any
) -> tuple[dict[str, str], dict[str, str]]:
    """Rotate, SIGKILLed after two secrets; check what it leaves; rotate again. Returns the
    sealed rows before and after."""
    before = read_rows()
    [old_key] = read_key_file(key_path)
    plain = opened(Sealer.from_key(old_key), before)
    assert len(plain) == len(RELAYS) + len(HOOKS)

    killed = rotate(config, kill_after=2)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    new_key, kept_old = read_key_file(key_path)  # a rotation under way: both keys
    assert kept_old == old_key and new_key != old_key
    midway = read_rows()
    assert sum(Sealer.from_key(new_key).is_current(s) for s in midway.values()) == 2
    assert opened(Sealer.from_key_file(key_path), midway) == plain  # nothing lost midway

    done = rotate(config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finishing the rotation under way" in done.stdout
    assert read_key_file(key_path) == [new_key]  # the same new key: taken up, not restarted
    after = read_rows()
    assert opened(Sealer.from_key_file(key_path), after) == plain
    assert opens_none(Sealer.from_key(old_key), after)  # the old key opens nothing stored
    assert opens_none(Sealer.from_key_file(key_path), before)  # nor does old ciphertext open
    return before, after


# --- with a server running throughout, on both engines ------------------------------------------


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def sqlite_rows(db: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT 'relay ' || name, sealed FROM relays UNION ALL"
            " SELECT 'hook ' || name, sealed FROM hooks WHERE sealed IS NOT NULL"
        )
        return dict(rows.fetchall())


def postgres_rows(url: str) -> dict[str, str]:
    found = query(
        url,
        "SELECT 'relay ' || name, sealed FROM relays UNION ALL"
        " SELECT 'hook ' || name, sealed FROM hooks WHERE sealed IS NOT NULL",
    )
    return {name: sealed for name, sealed in found}


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_rotate_while_serving_killed_midway_then_finished(
    tmp_path: Path, rx: Receiver, engine: str, request: pytest.FixtureRequest
) -> None:
    if engine == "sqlite":
        storage_url = "sqlite:///relayhook.db"
        key_path = tmp_path / "relayhook.db.key"  # beside the database
    else:
        storage_url = request.getfixturevalue("postgres_url")
        key_path = tmp_path / "relayhook.key"  # beside the config
    config = render_config(relays=[], admin_token=ADMIN, storage_url=storage_url) + render_tables(
        delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1}
    )
    server = RelayhookProcess(tmp_path, config)
    assert server.config_path is not None

    def rows() -> dict[str, str]:
        return sqlite_rows(server.db_path) if engine == "sqlite" else postgres_rows(storage_url)

    with server, http_client(base_url=server.url, headers=AUTH) as client:
        tokens = {}
        for name, secret in RELAYS.items():
            made = client.post(
                "/api/relays", json={"name": name, "connector": "gamify", "secret": secret}
            )
            assert made.status_code == 201, made.text
            tokens[name] = made.json()["url"].rsplit("/", 1)[1]
        for name, header in HOOKS.items():
            made = client.post(
                "/api/hooks",
                json={
                    "name": name,
                    "events": ["gamify.*"],
                    "url": f"{rx.url}/{name}/",
                    "headers": {"Authorization": header},
                },
            )
            assert made.status_code == 201, made.text

        def send_all(round_: int) -> None:
            for name, secret in RELAYS.items():
                sent = client.post(
                    f"/in/{tokens[name]}",
                    headers={"X-Relay-Secret": secret},
                    json={"event": "level.completed", "player": f"{name}-{round_}"},
                )
                assert sent.status_code == 200, sent.text
                refused = client.post(
                    f"/in/{tokens[name]}",
                    json={"event": "level.completed"},
                    headers={"X-Relay-Secret": "wrong-0123456789abcdef"},
                )
                assert refused.status_code == 401

        send_all(0)
        rotate_killed_then_again(server.config_path, key_path, rows)
        # The server never stopped: every relay still takes its secret, every hook still
        # sends its own header.
        send_all(1)
        got = rx.wait_for(2 * len(RELAYS) * len(HOOKS), timeout=WAIT)
        for name, header in HOOKS.items():
            assert {r.header("authorization") for r in got if r.path == f"/{name}/"} == {header}
        # A relay made now is sealed with the new key alone.
        made = client.post("/api/relays", json={"name": "late", "connector": "gamify"})
        assert made.status_code == 201
        [new_key] = read_key_file(key_path)
        assert Sealer.from_key(new_key).is_current(rows()["relay late"])
        assert "Traceback" not in server.log()

    with server, http_client(base_url=server.url) as client:  # and after a restart
        name, secret = next(iter(RELAYS.items()))
        sent = client.post(
            f"/in/{tokens[name]}",
            headers={"X-Relay-Secret": secret},
            json={"event": "level.completed", "player": "after-restart"},
        )
        assert sent.status_code == 200, sent.text


# --- PostgreSQL, relays and hooks made by the CLI, no server -------------------------------------


def test_rotate_a_postgres_store_killed_midway_then_finished(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tmp_path / "relayhook.toml"
    config.write_text(
        render_config(relays=[], storage_url=postgres_url)
        + render_tables(delivery={"allow_cidrs": ["127.0.0.1/32"]}),
        encoding="utf-8",
    )
    for name, secret in RELAYS.items():
        made = relayhook(
            config, "relays", "add", name, "--connector", "gamify", "--secret-stdin", stdin=secret
        )
        assert made.returncode == 0, made.stderr
    hooks = tmp_path / "hooks.toml"
    hooks.write_text(
        "".join(
            f'[[hooks]]\nname = "{name}"\nevents = ["gamify.*"]\nurl = "http://127.0.0.1:9/"\n'
            f'headers = {{ Authorization = "{header}" }}\n\n'
            for name, header in HOOKS.items()
        ),
        encoding="utf-8",
    )
    added = relayhook(config, "hooks", "add", str(hooks))
    assert added.returncode == 0, added.stderr

    rotate_killed_then_again(
        config, tmp_path / "relayhook.key", lambda: postgres_rows(postgres_url)
    )
    listed = relayhook(config, "relays", "list")
    assert listed.returncode == 0 and all(name in listed.stdout for name in RELAYS)
