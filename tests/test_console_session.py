"""Signing in to the console: the throttle (with an injected clock), password hashes, and
`relayhook admin password` reading standard input."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from relayhook.cli import main
from relayhook.passwords import (
    PASSWORD_HASH,
    ensure_password,
    fingerprint,
    hash_password,
    password_matches,
)
from relayhook.store import SQLiteStore
from relayhook.web.console.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_a_minute_from_one_address_are_throttled() -> None:
    clock = Clock()
    throttle = Throttle(clock)
    for _ in range(5):
        assert throttle.retry_after("10.0.0.1") is None
        throttle.fail("10.0.0.1")
        clock.now += 1
    assert throttle.retry_after("10.0.0.1") == 55  # when the first failure leaves the window
    assert throttle.retry_after("10.0.0.2") is None  # another address is not held back
    clock.now += 55
    assert throttle.retry_after("10.0.0.1") is None
    throttle.fail("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is not None  # still 5 within the last minute
    throttle.forget("10.0.0.1")  # a right password clears the count
    assert throttle.retry_after("10.0.0.1") is None


def test_a_password_is_kept_as_an_argon2id_hash() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert password_matches(stored, "correct horse battery")
    assert not password_matches(stored, "wrong horse battery")
    assert not password_matches("not a hash", "x")
    assert fingerprint(stored) != fingerprint(hash_password("correct horse battery"))  # salted
    with pytest.raises(ValueError, match="at least 10"):
        hash_password("short")


def test_admin_password_reads_stdin_and_replaces_the_first_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "relayhook.toml"
    config.write_text('[storage]\nurl = "sqlite:///relayhook.db"\n', encoding="utf-8")

    async def stored_hash() -> str | None:
        store = SQLiteStore(tmp_path / "relayhook.db")
        await store.open()
        try:
            first = await ensure_password(store, 0.0)
            assert first is None or len(first) >= 10
            return await store.get_admin_value(PASSWORD_HASH)
        finally:
            await store.close()

    monkeypatch.setattr("sys.stdin", io.StringIO("a new long password\n"))
    out = io.StringIO()
    assert main(["--config", str(config), "admin", "password"], out=out) == 0
    assert "password is set" in out.getvalue()
    stored = asyncio.run(stored_hash())
    assert stored is not None and password_matches(stored, "a new long password")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--config", str(config), "admin", "password"]) == 1
