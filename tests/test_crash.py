"""The crash test: SIGKILL `relayhook serve` while GMetri posts 500-row batches, several times,
on SQLite and on PostgreSQL.

GMetri never retries, so a 200 is a promise: every batch that got one must be complete in the
database after the crash, no batch may be half stored, and (SQLite) the file must be intact.
Each batch has its own `depSlug`, so its events are found by their `source`, `gmetri/o/batch-00017`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from postgres import query
from servers import RelayConfig, RelayhookProcess, http_client, render_config, wait_until

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("RELAYHOOK_CRASH_SEED", "20240501"))
ROWS = 500
CONCURRENCY = 4
CYCLE_TIMEOUT = 15.0  # seconds of load per kill, at most
GMETRI = RelayConfig("gmetri-crash", "gmetri", "tok-gmetri-crash-000001", "crash-secret-0123456789")


def batch_body_factory() -> Callable[[int], bytes]:
    """Batch n: the benchmark body (shared/bench/bodies/gmetri500.json: 500 identical variables
    rows from org "o") with `depSlug` = `batch-0000n`."""
    row = {"identifier": "user123@x.com", "variables": {"score": 75, "quizCompleted": False}}
    doc = {"type": "variables", "data": {"orgSlug": "o", "depSlug": "@DEP@", "rows": [row] * ROWS}}
    head, tail = json.dumps(doc, separators=(",", ":")).split("@DEP@")
    return lambda n: f"{head}{batch_slug(n)}{tail}".encode()


def batch_slug(n: int) -> str:
    return f"batch-{n:05d}"


def batch_source(n: int) -> str:
    return f"gmetri/o/{batch_slug(n)}"


@dataclass
class Load:
    """CONCURRENCY threads posting batches until `stop` is set or the server goes away."""

    url: str
    body: Callable[[int], bytes]
    numbers: itertools.count[int] = field(default_factory=itertools.count)
    sent: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    refused: dict[int, str] = field(default_factory=dict)  # answered, but not 200
    errors: list[BaseException] = field(default_factory=list)  # bugs in this test
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run_cycle(self) -> tuple[threading.Event, list[threading.Thread]]:
        stop = threading.Event()
        threads = [
            threading.Thread(target=self._post_until, args=(stop,), daemon=True)
            for _ in range(CONCURRENCY)
        ]
        for thread in threads:
            thread.start()
        return stop, threads

    def _post_until(self, stop: threading.Event) -> None:
        headers = {"Authorization": f"Basic {GMETRI.secret}", "Content-Type": "application/json"}
        try:
            with http_client(timeout=10.0) as client:
                while not stop.is_set():
                    with self.lock:
                        n = next(self.numbers)
                        self.sent.add(n)
                    try:
                        response = client.post(self.url, content=self.body(n), headers=headers)
                    except httpx.TransportError:
                        return  # the server was killed: this thread's part of the cycle is over
                    with self.lock:
                        if response.status_code == 200 and response.json()["accepted"] == ROWS:
                            self.acked.add(n)
                        else:
                            self.refused[n] = f"{response.status_code} {response.text}"
        except BaseException as exc:  # reported by the test, not lost in a thread
            with self.lock:
                self.errors.append(exc)

    def count_acked(self) -> int:
        with self.lock:
            return len(self.acked)

    def count_sent(self) -> int:
        with self.lock:
            return len(self.sent)


def kill_plans(rng: random.Random) -> list[tuple[str, float]]:
    """When to kill in each cycle: after some acknowledged batches, or at a random moment."""
    return [
        ("acks", rng.randint(2, 6)),
        ("moment", rng.uniform(0.0, 0.5)),
        ("acks", rng.randint(1, 12)),
        ("moment", rng.uniform(0.0, 1.0)),
        ("acks", rng.randint(3, 8)),
    ]


def crash_under_load(server: RelayhookProcess, load: Load, plan: str, value: float) -> None:
    """Post batches to the running server and SIGKILL it as `plan` says; return once every
    client thread has finished."""
    acked_target = load.count_acked() + value
    sent_target = load.count_sent() + CONCURRENCY
    stop, threads = load.run_cycle()
    try:
        if plan == "acks":
            wait_until(
                lambda: load.count_acked() >= acked_target,
                timeout=CYCLE_TIMEOUT,
                what=f"{value} acknowledged batches",
            )
        else:
            wait_until(
                lambda: load.count_sent() >= sent_target,
                timeout=CYCLE_TIMEOUT,
                what="requests in flight",
            )
            time.sleep(value)  # not synchronization: the random moment of the crash
    finally:
        server.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=15.0)
    assert not any(thread.is_alive() for thread in threads), "a client thread hangs"


EVENTS_PER_SOURCE = "SELECT source, count(*) FROM events GROUP BY source"
REQUESTS_PER_SOURCE = "SELECT source, count(DISTINCT request_id) FROM events GROUP BY source"
REQUESTS_PER_STATUS = "SELECT status, count(*) FROM requests GROUP BY status ORDER BY status"


def read_outcome(db: Path) -> tuple[str, dict[str, int], dict[str, int], list[tuple[str, int]]]:
    """(integrity check, events per source, requests per source, requests per status)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        integrity = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        events = dict(conn.execute(EVENTS_PER_SOURCE))
        requests = dict(conn.execute(REQUESTS_PER_SOURCE))
        statuses = list(conn.execute(REQUESTS_PER_STATUS))
    return integrity, events, requests, statuses


def read_postgres_outcome(
    url: str,
) -> tuple[str, dict[str, int], dict[str, int], list[tuple[str, int]]]:
    """As read_outcome; PostgreSQL keeps its own integrity (WAL), so that part is "ok"."""
    return (
        "ok",
        dict(query(url, EVENTS_PER_SOURCE)),
        dict(query(url, REQUESTS_PER_SOURCE)),
        [(status, count) for status, count in query(url, REQUESTS_PER_STATUS)],
    )


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_acknowledged_batches_survive_sigkill_and_no_batch_is_half_stored(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    storage_url = (
        "sqlite:///relayhook.db" if engine == "sqlite" else request.getfixturevalue("postgres_url")
    )
    config = render_config(
        relays=[GMETRI], admin_token="admin-token-crash-0123456789", storage_url=storage_url
    )
    server = RelayhookProcess(tmp_path, config)
    load = Load(f"{server.url}/in/{GMETRI.token}", batch_body_factory())
    plans = kill_plans(rng)
    try:
        for plan, value in plans:
            server.start()
            crash_under_load(server, load, plan, value)

        # The server comes back on the file the last SIGKILL left, and takes new batches.
        server.start()
        after = max(load.sent) + 1
        with http_client() as client:
            response = client.post(
                load.url,
                content=load.body(after),
                headers={
                    "Authorization": f"Basic {GMETRI.secret}",
                    "Content-Type": "application/json",
                },
            )
        assert response.status_code == 200, response.text
        load.sent.add(after)
        load.acked.add(after)
        server.stop()
    finally:
        server.close(quiet=True)

    assert not load.errors, load.errors
    assert not load.refused, load.refused
    integrity, events, requests, statuses = (
        read_outcome(server.db_path) if engine == "sqlite" else read_postgres_outcome(storage_url)
    )
    unanswered = sum(batch_source(n) in events for n in load.sent - load.acked)
    print(
        f"seed {SEED}: {len(load.sent)} batches sent, {len(load.acked)} acknowledged,"
        f" {unanswered} stored but killed before the answer, {time.monotonic() - started:.1f} s"
    )
    assert integrity == "ok"
    sources = {batch_source(n): n for n in load.sent}
    assert set(events) <= set(sources), set(events) - set(sources)
    missing = {
        n: events.get(batch_source(n), 0)
        for n in load.acked
        if events.get(batch_source(n), 0) != ROWS
    }
    assert not missing, f"acknowledged batches without all their events: {missing}"
    partial = {source: count for source, count in events.items() if count != ROWS}
    assert not partial, f"batches partly stored: {partial}"
    assert set(requests.values()) == {1}, "a batch's events come from one request"
    assert statuses == [("accepted", len(events))]
    # The test did crash the server with batches in flight, not only between them.
    assert load.sent - load.acked, "every batch sent was acknowledged: no kill hit a request"
    assert len(load.acked) >= sum(int(value) for plan, value in plans if plan == "acks")
    assert time.monotonic() - started < 90, "the crash test is meant to take well under a minute"
