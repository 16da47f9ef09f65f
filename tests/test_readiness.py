"""/readyz's checks, with a stand-in store and the clock passed in (the real store and a held
SQLite write lock are in test_ops_e2e.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from relayhook.readiness import Readiness
from relayhook.store import StoreError


class FakeStore:
    """probe_write waits for `gate` (if set) then raises `error` (if set)."""

    def __init__(self, error: Exception | None = None, current: bool = True) -> None:
        self.error = error
        self.current = current
        self.gate: asyncio.Event | None = None
        self.probes = 0

    async def probe_write(self) -> None:
        self.probes += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error

    async def schema_current(self) -> bool:
        return self.current


def readiness(store: FakeStore, **kwargs: Any) -> Readiness:
    return Readiness(store, probe_seconds=0.05, **kwargs)  # type: ignore[arg-type]


def test_ready_when_the_store_writes_and_its_schema_is_current() -> None:
    assert asyncio.run(readiness(FakeStore()).failing()) == []


def test_a_store_that_refuses_or_hangs_is_not_ready() -> None:
    assert asyncio.run(readiness(FakeStore(StoreError("disk full"))).failing()) == ["store"]
    assert asyncio.run(readiness(FakeStore(current=False)).failing()) == ["schema"]

    async def hanging() -> tuple[list[str], list[str], int]:
        store = FakeStore()
        store.gate = asyncio.Event()
        check = readiness(store)
        first, second = await check.failing(), await check.failing()
        store.gate.set()  # the lock is released: the probe still waiting completes
        await asyncio.sleep(0)
        return first, second, store.probes

    first, second, probes = asyncio.run(hanging())
    assert first == second == ["store"]
    assert probes == 1  # the second check shares the probe still waiting for the lock


def test_a_spool_that_holds_requests_and_does_not_shrink_is_not_ready() -> None:
    depth, now = [0], [0.0]
    check = readiness(
        FakeStore(), spool_depth=lambda: depth[0], clock=lambda: now[0], stuck_seconds=60
    )

    def failing_at(seconds: float, requests: int) -> list[str]:
        now[0], depth[0] = seconds, requests
        return asyncio.run(check.failing())

    assert failing_at(0, 0) == []
    assert failing_at(1, 5) == []  # just started to fill
    assert failing_at(30, 8) == []  # growing, for 29 s
    assert failing_at(62, 8) == ["spool"]  # 61 s without shrinking
    assert failing_at(63, 7) == []  # draining again
    assert failing_at(120, 7) == []
    assert failing_at(124, 7) == ["spool"]
    assert failing_at(125, 0) == []
