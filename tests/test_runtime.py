"""The worker runtime (relayhook/runtime.py): supervised tasks, store calls with a deadline, and
readiness that says when the dispatcher stalls or the disk runs short.

The chaos test runs the real runtime over a real store (SQLite and PostgreSQL) wrapped so that
one store call the dispatcher makes fails (raises) or hangs (is never answered) on its first
calls; every delivery must still arrive, within seconds. The same through real sockets, with a
`relayhook serve` subprocess, is in test_runtime_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import StoreFactory, run

from relayhook.assembly import assemble
from relayhook.core.events import Event
from relayhook.core.routing import route
from relayhook.readiness import MIB, Readiness
from relayhook.runtime import Runtime, Supervisor
from relayhook.settings import Settings
from relayhook.store import BacklogEntry, RequestRecord, Store, StoreError

EVENTS = 20
FAULTS = 3  # the first calls of the faulty method that fail or hang
RESUME_WITHIN = 8.0  # seconds; a delivery claimed then lost waits for its lease (3 s here)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


# -- the supervisor ------------------------------------------------------------------------


def test_a_failing_task_is_logged_counted_and_restarted_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, failures, runs = FakeClock(), [], []

    async def flaky() -> None:
        runs.append(clock.now)
        if len(runs) <= 4:
            raise KeyError("a hook deleted meanwhile")
        await asyncio.Event().wait()  # then it runs well, until cancelled

    async def scenario() -> None:
        supervisor = Supervisor(failed=failures.append, sleep=clock.sleep, clock=clock)
        supervisor.start("dispatcher", flaky)
        async with asyncio.timeout(5):
            while len(runs) < 5:
                await asyncio.sleep(0)
        await supervisor.stop()

    with caplog.at_level(logging.ERROR, logger="relayhook.runtime"):
        run(scenario())
    assert failures == ["dispatcher"] * 4
    assert clock.slept == [0.5, 1.0, 2.0, 4.0]  # backoff doubles
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4
    assert all(
        r.exc_info and "a hook deleted meanwhile" in r.getMessage() + caplog.text for r in errors
    )
    assert "Traceback" in caplog.text and "KeyError" in caplog.text


def test_a_task_that_ends_by_itself_is_started_again_but_not_when_stopping() -> None:
    clock, failures, runs = FakeClock(), [], []

    async def quits() -> None:
        runs.append(clock.now)

    async def scenario() -> None:
        supervisor = Supervisor(
            failed=failures.append, sleep=clock.sleep, clock=clock, backoff_max=1.0
        )
        supervisor.start("pruner", quits)
        async with asyncio.timeout(5):
            while len(runs) < 4:
                await asyncio.sleep(0)
        supervisor.stopping()
        await supervisor.stop()

    run(scenario())
    assert failures[:3] == ["pruner"] * 3
    assert clock.slept[:3] == [0.5, 1.0, 1.0]  # capped at backoff_max


def test_a_task_that_makes_no_progress_is_cancelled_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, failures = FakeClock(), []
    beats, starts, cancelled = [0], [0], [0]

    async def hangs_on_second_start() -> None:
        starts[0] += 1
        try:
            while True:
                if starts[0] == 1:
                    await asyncio.Event().wait()  # stuck: no progress
                beats[0] += 1
                await asyncio.sleep(0.001)
        except asyncio.CancelledError:
            cancelled[0] += 1
            raise

    async def scenario() -> None:
        supervisor = Supervisor(
            failed=failures.append, sleep=clock.sleep, clock=clock, check_every=0.005
        )
        supervisor.start(
            "dispatcher", hangs_on_second_start, progress=lambda: beats[0], stalled_after=30
        )
        async with asyncio.timeout(5):
            while starts[0] < 2:
                clock.now += 10  # time passes; the counter does not move
                await asyncio.sleep(0.01)
            while beats[0] < 10:
                await asyncio.sleep(0.005)
        await supervisor.stop()

    with caplog.at_level(logging.ERROR, logger="relayhook.runtime"):
        run(scenario())
    assert failures == ["dispatcher"]
    assert cancelled[0] == 2  # the stuck run, then the good one at stop
    assert "no progress for" in caplog.text


# -- readiness -----------------------------------------------------------------------------


class BacklogStore:
    """probe_write and schema_current succeed; backlog answers `waiting` pending deliveries."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting

    async def probe_write(self) -> None:
        return None

    async def schema_current(self) -> bool:
        return True

    async def backlog(self) -> list[BacklogEntry]:
        return [BacklogEntry("h", "pending", self.waiting, 0.0)] if self.waiting else []


def test_not_ready_while_deliveries_wait_and_the_dispatcher_does_not_claim() -> None:
    now, beats = [0.0], [0]
    store = BacklogStore(waiting=12)
    check = Readiness(
        store,
        clock=lambda: now[0],
        rounds=lambda: beats[0],  # type: ignore[arg-type]
        stalled_after=30,
    )

    def at(seconds: float) -> dict[str, str]:
        now[0] = seconds
        return asyncio.run(check.check())

    assert at(0) == {}
    assert at(29) == {}
    assert at(31) == {
        "dispatcher": "the dispatcher has made no claim round for 31 s while 12 deliveries wait"
    }
    store.waiting = 0
    assert at(40) == {}  # nothing waits: an idle dispatcher is not a failing one
    store.waiting = 3
    beats[0] += 1
    assert at(41) == {}  # it claims again
    assert at(70) == {}
    assert "dispatcher" in at(72)


def test_not_ready_when_the_disk_under_the_store_or_spool_runs_short(tmp_path: Path) -> None:
    free = {tmp_path / "relayhook.db": 500 * MIB, tmp_path / "relayhook.spool": 500 * MIB}
    check = Readiness(
        BacklogStore(0),
        disk_paths=list(free),  # type: ignore[arg-type]
        min_free_bytes=100 * MIB,
        disk_free=lambda path: free[path],
    )
    assert asyncio.run(check.check()) == {}
    free[tmp_path / "relayhook.spool"] = 99 * MIB
    assert asyncio.run(check.check()) == {
        "disk": "less than 100 MiB free on the disk of the store or the spool"
    }
    unchecked = Readiness(
        BacklogStore(0),
        disk_paths=list(free),  # type: ignore[arg-type]
        min_free_bytes=0,
        disk_free=lambda path: 0,
    )
    assert asyncio.run(unchecked.check()) == {}


# -- chaos: a fault at each store call the dispatcher makes, on both engines ---------------


class FaultyStore:
    """A store whose `method` raises (kind "raise") or never answers (kind "hang") on its
    first `times` calls once `armed`; everything else goes to the real store."""

    def __init__(self, store: Store, method: str, kind: str, times: int) -> None:
        self._store, self._method, self._kind, self._left = store, method, kind, times
        self.faults = 0
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method:
            return real

        async def faulty(*args: Any, **kwargs: Any) -> Any:
            if self.armed and self._left > 0:
                self._left -= 1
                self.faults += 1
                if self._kind == "raise":
                    raise RuntimeError(f"injected fault in {name}")
                await asyncio.Event().wait()  # never answered
            return await real(*args, **kwargs)

        return faulty


class StubResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        return ["93.184.215.14"]  # a public address; the mock transport connects nowhere


DISPATCHER_CALLS = [
    "config_version",
    "hook_states",
    "list_hooks",
    "claim_due",
    "pacing_wait",
    "reserve_sends",
    "finish",
    "set_hook_active",
]


def chaos_settings(tmp_path: Path, method: str) -> Settings:
    hooks: list[dict[str, Any]] = [
        {
            "name": "plain",
            "events": ["*"],
            "url": "https://r.example/plain",
            "timeout": 0.5,
            "concurrency": 4,
            "retry": {"schedule": [0, 0.1, 0.1, 0.1], "jitter": 0},
        },
        {
            "name": "paced",
            "events": ["*"],
            "url": "https://r.example/paced",
            "timeout": 0.5,
            "rate_limit": {"per_second": 200},
            "retry": {"schedule": [0, 0.1, 0.1], "jitter": 0},
        },
    ]
    if method == "set_hook_active":  # called when a 410 pauses a hook
        hooks.append(
            {
                "name": "gone",
                "events": ["*"],
                "url": "https://r.example/gone",
                "timeout": 0.5,
                "concurrency": 1,
                "retry": {"schedule": [0, 0.1, 0.1], "jitter": 0},
            }
        )
    return Settings(
        hooks=hooks,
        config_dir=tmp_path,
        delivery={"poll_interval": 0.05, "lease_seconds": 1},
        worker={"store_deadline": 0.3, "stalled_after": 2},
        retention={"interval": 0},
        storage={"min_free_mb": 0},
    )


def events_for(relay: str = "r") -> list[Event]:
    return [
        Event(
            id=f"ev-{n}",
            source="s",
            type="t",
            subject=None,
            time="2024-05-01T12:00:00.000Z",
            data={"n": n},
            relay=relay,
        )
        for n in range(EVENTS)
    ]


@pytest.mark.parametrize("kind", ["raise", "hang"])
@pytest.mark.parametrize("method", DISPATCHER_CALLS)
def test_deliveries_resume_after_faults_at_each_store_call(
    new_store: StoreFactory,
    tmp_path: Path,
    method: str,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    arrived: dict[str, set[str]] = {}
    answered_410: set[str] = set()

    async def receiver(request: httpx.Request) -> httpx.Response:
        hook = request.url.path.strip("/")
        if hook == "gone" and not answered_410:
            answered_410.add(request.headers["webhook-id"])
            return httpx.Response(410)
        arrived.setdefault(hook, set()).add(json.loads(request.content)["id"])
        return httpx.Response(200)

    async def scenario() -> tuple[float, FaultyStore, Runtime]:
        real = new_store()
        await real.open()
        store = FaultyStore(real, method, kind, FAULTS)
        settings = chaos_settings(tmp_path, method)
        parts = assemble(settings, role="worker", store=store)  # type: ignore[arg-type]
        runtime = Runtime(
            parts,
            transport=httpx.MockTransport(receiver),
            resolver=StubResolver(),
            sleep=fast_sleep,
        )
        runtime.supervisor.backoff_min = 0.05
        hooks = list(parts.live.hooks)
        try:
            async with runtime.running(open_store=False):
                store.armed = True  # the start (which reads the hooks) went well
                if method in ("hook_states", "list_hooks"):  # read when the config moves
                    await real.set_hook_active("plain", True, None, time.time())
                    parts.wake()
                started = time.monotonic()
                await ingest(real, parts.live.hooks.values())
                parts.wake()
                async with asyncio.timeout(RESUME_WITHIN * 2):
                    while any(len(arrived.get(h, ())) < EVENTS for h in hooks):
                        await asyncio.sleep(0.02)
                took = time.monotonic() - started
        finally:
            await real.close()
        return took, store, runtime

    with caplog.at_level(logging.ERROR):
        took, store, runtime = run(scenario())
    assert store.faults >= 1, f"{method} was never called"
    assert all(len(arrived[h]) == EVENTS for h in runtime.parts.live.hooks)
    print(f"{method} {kind}: every delivery arrived {took:.2f} s after the faults began")
    assert took < RESUME_WITHIN, took
    if kind == "hang":
        assert "no answer within 0.3 s" in caplog.text
    elif method not in ("finish", "set_hook_active"):  # those fail one delivery, not the loop
        assert failures_counted(runtime, "dispatcher") >= 1
        assert "dispatcher failed; starting it again" in caplog.text
        assert "Traceback" in caplog.text and f"injected fault in {method}" in caplog.text


async def fast_sleep(seconds: float) -> None:
    await asyncio.sleep(min(seconds, 0.05))


async def ingest(store: Store, hooks: Any) -> None:
    events = events_for()
    ids = iter(range(10**6))
    deliveries = route(
        events,
        hooks,
        active={h.name: True for h in hooks},
        now=time.time(),
        new_id=lambda: f"d{next(ids)}",
    )
    record = RequestRecord(
        id="req",
        relay="r",
        received_at="2024-05-01T12:00:00Z",
        method="POST",
        query="",
        headers=(),
        body=b"{}",
        status="accepted",
    )
    await store.ingest(record, events, deliveries)


def failures_counted(runtime: Runtime, task: str) -> float:
    value = runtime.parts.metrics.registry.get_sample_value(
        "relayhook_task_failures_total", {"task": task}
    )
    return value or 0.0


def test_a_store_failure_in_a_claim_round_is_retried_not_a_task_failure(tmp_path: Path) -> None:
    """StoreError (the store down) is the loop's own business: logged, tried again, not a
    restart of the task."""
    calls: list[str] = []

    class DownStore:
        def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
            async def down(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                raise StoreError("the database is down")

            return down

        def subscribe(self, callback: Any) -> None:
            return None

    async def scenario() -> Runtime:
        settings = chaos_settings(tmp_path, "claim_due")
        parts = assemble(settings, role="worker", store=DownStore())  # type: ignore[arg-type]
        runtime = Runtime(
            parts,
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
            resolver=StubResolver(),
            sleep=fast_sleep,
        )
        runtime.start()
        async with asyncio.timeout(5):
            while len(calls) < 3:  # three claim rounds, each failing at its first read
                await asyncio.sleep(0.01)
        await runtime.stop()
        return runtime

    runtime = run(scenario())
    assert failures_counted(runtime, "dispatcher") == 0
