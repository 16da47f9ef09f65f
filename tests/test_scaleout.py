"""Scale-out end to end: two `relayhook serve --role web` and two `--role worker` processes on one
PostgreSQL, a real receiver (tests/receiver.py), GMetri batches posted to both web processes.

- a 25/s hook served by both workers: at most 25 requests in any second (+1 for clock edges),
  no 429 from a receiver that enforces 30/s;
- 20,000 events with one worker SIGKILLed midway: every event arrives, every duplicate was
  claimed at the kill and carries the same webhook-id, nothing stays claimed after the lease.

The tests run in this order on one cluster (the second kills a worker).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from postgres import query
from receiver import Receiver, Recorded
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

SCALE = RelayConfig("gm-scale", "gmetri", "tok-gm-scale-0123456789", "scale-secret-0123456789")
PACED = RelayConfig("gm-paced", "gmetri", "tok-gm-paced-0123456789", "paced-secret-0123456789")
EVENTS = 20_000
ROWS = 500
PACED_EVENTS = 150  # 6 s at 25/s


def cluster_config(postgres_url: str, rx: str) -> str:
    hooks = [
        {
            "name": "scale",
            "events": ["*"],
            "relays": [SCALE.name],
            "url": rx + "/scale/",
            "timeout": 1,
            "concurrency": 32,
            "retry": {"schedule": [0, 0.5, 0.5], "jitter": 0},
        },
        {
            "name": "paced",
            "events": ["*"],
            "relays": [PACED.name],
            "url": rx + "/paced/",
            "rate_limit": {"per_second": 25},
            "concurrency": 8,
            "retry": {"schedule": [0, 1, 1], "jitter": 0},
        },
    ]
    delivery = {"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.2, "lease_seconds": 2}
    return (
        render_config(relays=[SCALE, PACED], storage_url=postgres_url)
        + render_tables(delivery=delivery)
        + render_hooks(hooks)
    )


class Cluster:
    def __init__(self, root: Path, config: str) -> None:
        self.webs = [
            RelayhookProcess(root / f"web{i}", config, extra_args=["--role", "web"]) for i in (1, 2)
        ]
        self.workers = [
            RelayhookProcess(root / f"worker{i}", config, extra_args=["--role", "worker"])
            for i in (1, 2)
        ]

    def start(self) -> None:
        self.webs[0].start()  # the first applies the migrations; the others find them done
        for server in [*self.webs[1:], *self.workers]:
            server.start()

    def close(self) -> None:
        for server in [*self.webs, *self.workers]:
            server.close(quiet=True)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, postgres_database: Any
) -> Iterator[tuple[Cluster, str]]:
    url: str = postgres_database.url()
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), cluster_config(url, receiver.url))
    try:
        cluster.start()
        yield cluster, url
    finally:
        cluster.close()


def gmetri_batch(n: int, rows: int = ROWS) -> bytes:
    data = [
        {"identifier": f"viewer{n}-{i}@x.com", "variables": {"n": n, "i": i}} for i in range(rows)
    ]
    return json.dumps(
        {"type": "variables", "data": {"orgSlug": "o", "depSlug": f"d{n}", "rows": data}}
    ).encode()


def post(client: httpx.Client, url: str, relay: RelayConfig, body: bytes) -> None:
    response = client.post(
        f"{url}/in/{relay.token}",
        content=body,
        headers={"Authorization": f"Basic {relay.secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def event_ids(requests: list[Recorded]) -> dict[str, set[str | None]]:
    """Per event id (the body's `id`), the webhook-ids it arrived with."""
    seen: defaultdict[str, set[str | None]] = defaultdict(set)
    for request in requests:
        seen[json.loads(request.body)["id"]].add(request.header("webhook-id"))
    return seen


def test_two_workers_on_a_25_per_second_hook_send_25_per_second_together(
    cluster: tuple[Cluster, str], receiver: Receiver
) -> None:
    servers, _ = cluster
    receiver.limit("/paced/", per_second=30)
    with http_client() as client:
        post(client, servers.webs[0].url, PACED, gmetri_batch(0, PACED_EVENTS // 2))
        post(client, servers.webs[1].url, PACED, gmetri_batch(1, PACED_EVENTS // 2))
    got = receiver.wait_for(PACED_EVENTS, 30.0, path="/paced/")

    assert [r.status for r in got if r.status != 200] == []  # not a single 429 (limit 30/s)
    # The pacing is the workers' promise about when they send: count the attempts' start times
    # (each worker's clock as it sends). Arrival times would also count the receiver's own
    # stalls on a loaded machine (a stalled receiver records a burst of arrivals at once).
    _, url = cluster
    attempts = (
        "SELECT a.started_at FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
        " WHERE d.hook = 'paced'"
    )
    wait_until(
        lambda: len(query(url, attempts)) >= PACED_EVENTS,
        timeout=10.0,
        what="every attempt recorded",
    )  # the receiver may see one before its finish
    sent = [started for (started,) in query(url, attempts)]
    assert len(sent) == PACED_EVENTS
    busiest = max(sum(1 for s in sent if t <= s < t + 1.0) for t in sent)
    assert busiest <= 26, busiest
    elapsed = got[-1].arrived - got[0].arrived
    assert elapsed >= (PACED_EVENTS - 26) / 25, elapsed  # paced, not merely under 30/s
    assert len(event_ids(got)) == PACED_EVENTS


def test_20000_events_and_a_worker_killed_midway_lose_nothing(
    cluster: tuple[Cluster, str], receiver: Receiver
) -> None:
    servers, url = cluster
    started = time.monotonic()
    with http_client(timeout=30.0) as client:
        for n in range(EVENTS // ROWS):
            post(client, servers.webs[n % 2].url, SCALE, gmetri_batch(1000 + n))
    wait_until(
        lambda: receiver.count("/scale/") >= EVENTS // 3,
        timeout=60.0,
        what="a third of the events at the receiver",
    )
    servers.workers[0].kill()
    in_flight = {
        row[0]
        for row in query(
            url, "SELECT id FROM deliveries WHERE hook = 'scale' AND status = 'claimed'"
        )
    }

    wait_until(
        lambda: len(event_ids(receiver.requests("/scale/"))) >= EVENTS,
        timeout=120.0,
        interval=0.5,
        what="every event at the receiver",
    )
    wait_until(
        lambda: (
            query(
                url,
                "SELECT count(*) FROM deliveries WHERE hook = 'scale' AND status <> 'succeeded'",
            )
            == [(0,)]
        ),
        timeout=30.0,
        interval=0.5,
        what="every delivery succeeded",
    )
    assert in_flight, "nothing was in flight at the kill"

    seen = event_ids(receiver.requests("/scale/"))
    assert len(seen) == EVENTS
    assert all(len(ids) == 1 for ids in seen.values())  # a duplicate has the same webhook-id
    duplicates = _duplicated(receiver.requests("/scale/"))
    assert duplicates <= in_flight, duplicates - in_flight
    print(
        f"{EVENTS} events through 2 web + 2 workers in {time.monotonic() - started:.1f} s;"
        f" {len(in_flight)} claimed at the kill, {len(duplicates)} sent twice"
    )
    left = query(
        url, "SELECT count(*) FROM deliveries WHERE status = 'claimed' OR lease_owner IS NOT NULL"
    )
    assert left == [(0,)]


def _duplicated(requests: list[Recorded]) -> set[str | None]:
    """The webhook-ids (delivery ids) that arrived more than once."""
    counts: defaultdict[str | None, int] = defaultdict(int)
    for request in requests:
        counts[request.header("webhook-id")] += 1
    return {webhook_id for webhook_id, count in counts.items() if count > 1}
