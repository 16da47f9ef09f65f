"""A worker SIGKILLed while two workers deliver 4,000 events from PostgreSQL (one web process, a
real receiver counting webhook-ids): every event arrives, and the events that arrive twice are
those the killed worker had sent and not yet recorded at the kill: at most what it may hold in
flight (the hook's concurrency on the wire, as many answered with their finish on its way), not the
hundreds answered and waiting behind the group commit that it used to hold.

    CI=true .venv/bin/python -m pytest -q -s tests/test_scaleout_kill.py
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import query
from receiver import Receiver
from servers import (
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

pytestmark = pytest.mark.slow

RELAY = RelayConfig("gm-kill", "gmetri", "tok-gm-kill-0123456789", "kill-secret-0123456789")
EVENTS = 4_000
ROWS = 500
CONCURRENCY = 32


def config(postgres_url: str, rx: str) -> str:
    hooks = [
        {
            "name": "scale",
            "events": ["*"],
            "url": rx + "/scale/",
            "timeout": 1,
            "concurrency": CONCURRENCY,
            "retry": {"schedule": [0, 0.5, 0.5], "jitter": 0},
        }
    ]
    delivery = {"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.2, "lease_seconds": 2}
    return (
        render_config(relays=[RELAY], storage_url=postgres_url)
        + render_tables(delivery=delivery)
        + render_hooks(hooks)
    )


def gmetri_batch(n: int) -> bytes:
    rows = [
        {"identifier": f"viewer{n}-{i}@x.com", "variables": {"n": n, "i": i}} for i in range(ROWS)
    ]
    return json.dumps(
        {"type": "variables", "data": {"orgSlug": "o", "depSlug": f"d{n}", "rows": rows}}
    ).encode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


def owner_of(worker: RelayhookProcess) -> str:
    found = re.search(r"started \(claims as (worker-[0-9a-f]+)\)", worker.log())
    assert found, worker.log()
    return found.group(1)


def test_a_killed_worker_sends_twice_at_most_what_it_had_in_flight(
    tmp_path: Path, receiver: Receiver, postgres_url: str
) -> None:
    text = config(postgres_url, receiver.url)
    web = RelayhookProcess(tmp_path / "web", text, extra_args=["--role", "web"])
    workers = [
        RelayhookProcess(tmp_path / f"worker{i}", text, extra_args=["--role", "worker"])
        for i in (1, 2)
    ]
    try:
        web.start()
        with http_client(timeout=30.0) as client:
            for n in range(EVENTS // ROWS):
                response = client.post(
                    f"{web.url}/in/{RELAY.token}",
                    content=gmetri_batch(n),
                    headers={
                        "Authorization": f"Basic {RELAY.secret}",
                        "Content-Type": "application/json",
                    },
                )
                assert response.status_code == 200, response.text
        for worker in workers:
            worker.start()
        killed = owner_of(workers[0])
        wait_until(
            lambda: receiver.count("/scale/") >= EVENTS // 3,
            timeout=60.0,
            what="a third of the events at the receiver",
        )
        workers[0].kill()
        killed_at = time.monotonic()
        claimed = {
            row[0]
            for row in query(
                postgres_url, "SELECT id FROM deliveries WHERE lease_owner = $1", killed
            )
        }
        sent = {
            r.header("webhook-id") for r in receiver.requests("/scale/") if r.arrived < killed_at
        }
        wait_until(
            lambda: (
                query(postgres_url, "SELECT count(*) FROM deliveries WHERE status <> 'succeeded'")
                == [(0,)]
            ),
            timeout=120.0,
            interval=0.5,
            what="every delivery succeeded",
        )
    finally:
        for server in (web, *workers):
            server.close(quiet=True)
    arrivals = Counter(r.header("webhook-id") for r in receiver.requests("/scale/"))
    duplicates = {webhook_id for webhook_id, count in arrivals.items() if count > 1}
    sent_not_recorded = claimed & sent
    print(
        f"{EVENTS} events, 2 workers, one SIGKILLed: it held {len(claimed)} claimed, had sent"
        f" {len(sent_not_recorded)} of them not yet recorded; {len(duplicates)} arrived twice"
    )
    assert len(arrivals) == EVENTS
    assert duplicates <= sent_not_recorded, duplicates - sent_not_recorded
    # What the killed process may hold sent and not recorded: `concurrency` requests on the
    # wire, and as many answered whose finish was on its way (measured: 6-21; main: 239-572).
    assert len(duplicates) <= 2 * CONCURRENCY, len(duplicates)
