"""The key ring behind `relayhook keys rotate`: seal with the first key, open with any, follow a
key file that changes; and the rotation of a configured key ([secrets] key + previous_key)."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path

import pytest
from servers import render_config

from relayhook.cli import main
from relayhook.sealing import Sealer, SealError, new_key, write_key_file

OLD, NEW = "old-key-0123456789abcdef0123456789", "new-key-0123456789abcdef0123456789"


def test_a_ring_seals_with_its_first_key_and_opens_with_any() -> None:
    by_old = Sealer.from_key(OLD).seal({"secret": "s"})
    ring = Sealer.from_keys([NEW, OLD])
    assert ring.open(by_old) == {"secret": "s"} and not ring.is_current(by_old)
    again = ring.reseal(by_old)
    assert ring.is_current(again) and Sealer.from_key(NEW).open(again) == {"secret": "s"}
    with pytest.raises(SealError):
        Sealer.from_key(OLD).open(again)
    with pytest.raises(SealError):
        Sealer.from_key(NEW).reseal(Sealer.from_key("another-key-0123456789abcdef0123").seal({}))


def test_a_key_file_sealer_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.db.key"
    write_key_file(path, [OLD])
    assert path.stat().st_mode & 0o777 == 0o600
    sealer = Sealer.from_key_file(path)
    by_old = sealer.seal({"n": 1})
    by_new = Sealer.from_key(NEW).seal({"n": 2})
    write_key_file(path, [NEW, OLD])  # a rotation began in another process
    assert sealer.open(by_new) == {"n": 2}  # read the file again to open it
    assert Sealer.from_key(NEW).is_current(sealer.seal({"n": 3}))  # seals with the new key
    write_key_file(path, [NEW])  # and ended
    sealer.seal({})
    with pytest.raises(SealError):
        sealer.open(by_old)


def run(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    out = io.StringIO()
    return main(["--config", str(config), *args], out=out), out.getvalue()


def test_rotating_a_configured_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "relayhook.toml"
    base = render_config(relays=[])
    config.write_text(base + f'[secrets]\nkey = "{OLD}"\n', encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO("gamify-secret-0123456789abcdef"))
    assert (
        run(config, "relays", "add", "players", "--connector", "gamify", "--secret-stdin")[0] == 0
    )

    def sealed() -> str:
        with contextlib.closing(sqlite3.connect(tmp_path / "relayhook.db")) as conn:
            value: str = conn.execute("SELECT sealed FROM relays").fetchone()[0]
            return value

    before = sealed()
    code, printed = run(config, "keys", "rotate")
    assert code == 0 and "To change a configured key" in printed
    assert sealed() == before  # already sealed with the configured key: nothing to do

    config.write_text(
        base + f'[secrets]\nkey = "{NEW}"\nprevious_key = "{OLD}"\n', encoding="utf-8"
    )
    code, printed = run(config, "keys", "rotate")
    assert code == 0 and "\n1 stored secrets sealed again with the configured key" in printed
    assert "Remove the previous key" in printed
    assert Sealer.from_key(NEW).open(sealed()) == Sealer.from_key(OLD).open(before)
    with pytest.raises(SealError):
        Sealer.from_key(OLD).open(sealed())
    assert len(new_key()) >= 32
