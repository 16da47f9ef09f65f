"""What learning payload shapes costs beside ingest (issue 21, item 2), in one process.

    python bench/shapes.py                      # gmetri500.json, synthesis.json, small.json
    python bench/shapes.py --requests 300 --rounds 5

Per body: the CPU (all threads: the SQLite writer included) of ingesting N requests the way the
intake does it (map with the shipped connector, route, one store transaction, SQLite FULL on a
temporary file), then the CPU of `ShapeWatch.learn` over the same stored requests and events.
The ratio is what shapes add to ingest; the HTTP server's own CPU is left out of the ingest
figure, so the real share is smaller still. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relayhook.core.connectors import SHIPPED_DIR, load_connectors
from relayhook.core.events import Event, format_time
from relayhook.core.hooks import build_hooks
from relayhook.intake import Intake
from relayhook.live import LiveConfig
from relayhook.relays import Relay
from relayhook.shapewatch import ShapeWatch
from relayhook.store import RequestRecord, SQLiteStore

PROJECT = Path(__file__).resolve().parents[1]
BODIES = PROJECT.parent / "shared" / "bench" / "bodies"
CONNECTOR = {"gmetri500.json": "gmetri", "synthesis.json": "synthesisvr", "small.json": "generic"}


async def one_round(body: bytes, connector_id: str, requests: int) -> tuple[float, float]:
    """(ingest CPU s, shapes CPU s) for `requests` requests of `body`."""
    connectors = load_connectors([SHIPPED_DIR])
    relay = Relay("bench", connectors[connector_id], "t" * 16, "x" * 24)
    live = LiveConfig(build_hooks([], "bench"), {relay.token: relay})
    with tempfile.TemporaryDirectory(prefix="relayhook-shapes-") as folder:
        store = SQLiteStore(Path(folder) / "relayhook.db")
        await store.open()
        kept: list[tuple[RequestRecord, Sequence[Event], Any]] = []
        intake = Intake(
            store,
            live,
            lambda: uuid.uuid4().hex,
            observe=lambda record, events, body: kept.append((record, events, body)),
        )
        try:
            started = time.process_time()
            for n in range(requests):
                record = RequestRecord(
                    f"req_{n}",
                    "bench",
                    format_time_now(),
                    "POST",
                    "",
                    (("content-type", "application/json"),),
                    body,
                    "accepted",
                )
                await intake.keep(relay, record)
            ingest = time.process_time() - started
            watch = ShapeWatch(store, live, clock=time.time)
            await watch._load("bench")  # what a running watch has done once, at its start
            started = time.process_time()
            for record, events, parsed in kept:
                await watch.learn(record, events, parsed)
            shapes = time.process_time() - started
        finally:
            await store.close()
    return ingest, shapes


def format_time_now() -> str:
    return format_time(datetime.now(UTC))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bodies", type=Path, default=BODIES)
    args = parser.parse_args()
    rows = []
    for name, connector_id in CONNECTOR.items():
        body = (args.bodies / name).read_bytes()
        if connector_id == "synthesisvr":
            body = json.dumps(json.loads(body)).encode()
        runs = [
            asyncio.run(one_round(body, connector_id, args.requests)) for _ in range(args.rounds)
        ]
        ingest = statistics.median(r[0] for r in runs) / args.requests * 1e6
        shapes = statistics.median(r[1] for r in runs) / args.requests * 1e6
        rows.append((name, ingest, shapes))
    print("| body | ingest CPU us/request | shapes CPU us/request | shapes / ingest |")
    print("| --- | ---: | ---: | ---: |")
    for name, ingest, shapes in rows:
        print(f"| {name} | {ingest:.0f} | {shapes:.0f} | {100 * shapes / ingest:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
