"""Memory and backlog (issue 12, item 3): a real `relayhook serve` with N deliveries pending for
a receiver that is down, then the receiver back.

For each backlog size (`--pending`, default 1,000 and 1,000,000), in a fresh folder:

1. **Fill.** `relayhook serve` creates the database (the `generic` relay, one hook `sink`
   posting `{{ event.data }}` to a port where nothing listens) and stops; then N requests,
   events and deliveries are written straight into its SQLite file in one transaction
   (deliveries `failed`, tried once, due again in an hour: what a receiver that is down
   leaves behind). Direct writes, because ingesting a million events over HTTP takes minutes.
2. **Claim round.** The dispatcher's claim statement (`claim_due`, inside a transaction that is
   rolled back) timed on that file: with nothing due (the receiver is down, every retry is
   later) and with everything due (the receiver is back), median of `--claims`.
3. **Receiver down.** `relayhook serve` on that database: its RSS (VmRSS, VmHWM) and CPU while
   idle for `--idle` s, then while wrk posts the small body for `--duration` s (each request a
   new event and a new delivery that fails): ingest requests/s against the same run with no
   backlog.
4. **Receiver back.** The server stopped, every delivery made due now (the retry time came),
   the server started again with the hook posting to the bench's sink: deliveries reaching the
   sink per second over `--drain` s, and the RSS meanwhile.

Everything on 127.0.0.1; every loop bounded; servers stopped in `finally`.

    python bench/backlog.py                            # 1k and 1M pending (~4 min)
    python bench/backlog.py --pending 1000 --pending 100000 --duration 4
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cells import HOST, ServerProcess, relayhook_process, run_wrk
from compare import DEFAULT_BODIES
from deliver import Receiver, free_port

from relayhook.assembly import new_uuid
from relayhook.store.sqlite.deliveries import claim_due

HOOK = "sink"
FILL_BATCH = 50_000


def fill(database: Path, pending: int, now: float) -> float:
    """Write `pending` requests, events and failed deliveries; the seconds it took."""
    start = time.monotonic()
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA synchronous = OFF")  # the bench's own fill: speed, not durability
        received = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
        for first in range(0, pending, FILL_BATCH):
            # Ids as relayhook makes them (UUIDv7, time-ordered): random uuid4 ids would scatter
            # every index lookup over a million rows, which production never does.
            ids = [
                (new_uuid(), new_uuid(), new_uuid())
                for _ in range(min(FILL_BATCH, pending - first))
            ]
            db.executemany(
                "INSERT INTO requests (id, relay, received_at, method, query, headers, body,"
                " status) VALUES (?, 'generic', ?, 'POST', '', '[]', ?, 'accepted')",
                [(request, received, b'{"n": 1}') for request, _, _ in ids],
            )
            db.executemany(
                "INSERT INTO events (id, request_id, relay, type, source, subject, time, data)"
                " VALUES (?, ?, 'generic', 'generic.webhook.received', 'generic/generic', NULL,"
                " ?, '{\"n\":1}')",
                [(event, request, received) for request, event, _ in ids],
            )
            db.executemany(
                "INSERT INTO deliveries (id, event_id, hook, relay, status, tries, attempts,"
                " due_at, last_error, created_at, updated_at) VALUES (?, ?, ?, 'generic',"
                " 'failed', 1, 1, ?, 'connection refused', ?, ?)",
                [(delivery, event, HOOK, now + 3600, now, now) for _, event, delivery in ids],
            )
        db.commit()
    return time.monotonic() - start


def claim_times(database: Path, now: float, rounds: int, limit: int = 64) -> dict[str, float]:
    """Median ms of one claim statement, nothing due and everything due (rolled back)."""
    out: dict[str, float] = {}
    with sqlite3.connect(database, isolation_level=None) as db:
        for label, at in (("nothing due", now), ("all due", now + 7200)):
            times = []
            for _ in range(rounds):
                db.execute("BEGIN IMMEDIATE")
                start = time.perf_counter()
                claimed = claim_due(
                    db,
                    hook=HOOK,
                    now=at,
                    limit=limit,
                    lease_until=at + 60,
                    owner="bench",
                    ordered=False,
                    concurrency=None,
                )
                times.append((time.perf_counter() - start) * 1000)
                db.execute("ROLLBACK")
            out[label] = statistics.median(times)
            out[f"{label}: claimed"] = len(claimed)
    return out


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def start(folder: Path, sink: str, cpu: int) -> ServerProcess:
    server = relayhook_process(folder, free_port(), cpu, sink, concurrency=64)
    server.wait_healthy()
    return server


def receiver_down(folder: Path, args: argparse.Namespace, dead_url: str) -> dict[str, Any]:
    """RSS and CPU idle with the backlog, then ingest under wrk while it grows."""
    server = start(folder, dead_url, args.server_cpu)
    try:
        cpu0 = server.cpu_seconds()
        time.sleep(args.idle)  # bounded: a fixed observation window
        idle_cpu = 100 * (server.cpu_seconds() - cpu0) / args.idle
        idle_memory = memory_mb(server.process.pid)
        cpu0 = server.cpu_seconds()
        wrk = run_wrk(server.url, args.body, args.duration, args.connections, folder)
        answered = wrk["requests"] - wrk["status"]
        busy = server.cpu_seconds() - cpu0
        return {
            "idle_cpu_pct": idle_cpu,
            "idle_mb": idle_memory,
            "ingest_per_s": answered / (wrk["duration_us"] / 1e6),
            "ingest_us_per_request": 1e6 * busy / max(1, answered),
            "ingest_p99_ms": wrk["p99_us"] / 1000,
            "ingest_errors": wrk["status"],
            "after_ingest_mb": memory_mb(server.process.pid),
        }
    finally:
        server.stop()


def receiver_back(folder: Path, args: argparse.Namespace, sink: Receiver) -> dict[str, Any]:
    """Every delivery due now; the sink listening: deliveries/s reaching it."""
    with sqlite3.connect(folder / "relayhook.db") as db:
        db.execute("UPDATE deliveries SET due_at = 0 WHERE status = 'failed'")
    sink.reset()
    server = start(folder, sink.url + "/hook", args.server_cpu)
    try:
        time.sleep(args.drain)  # bounded: a fixed observation window
        arrived = sink.stats()
        memory = memory_mb(server.process.pid)
    finally:
        server.stop()
    count, first, last = arrived["count"], arrived["first"], arrived["last"]
    with sqlite3.connect(folder / "relayhook.db") as db:
        left = db.execute(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'failed', 'claimed')"
        ).fetchone()[0]
    # From the first arrival to the last: the rate while there was something to drain.
    return {
        "drain_per_s": (count - 1) / (last - first) if count > 1 else 0.0,
        "drain_mb": memory,
        "drained": count,
        "duplicates": count - arrived["unique_ids"],
        "left_to_drain": left,
    }


def run(pending: int, args: argparse.Namespace, sink: Receiver) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"backlog-{pending}-") as name:
        folder = Path(name)
        dead_url = f"http://{HOST}:{free_port()}/down"  # nothing listens there
        start(folder, dead_url, args.server_cpu).stop()  # the schema and the hook
        now = time.time()
        row: dict[str, Any] = {
            "pending": pending,
            "fill_s": fill(folder / "relayhook.db", pending, now),
        }
        row["claim_ms"] = claim_times(folder / "relayhook.db", now, args.claims)
        row.update(receiver_down(folder, args, dead_url))
        row.update(receiver_back(folder, args, sink))
        print(json.dumps(row), flush=True)
        return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, action="append")
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--duration", type=int, default=8, help="wrk seconds")
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--claims", type=int, default=21)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--body", type=Path, default=DEFAULT_BODIES / "small.json")
    args = parser.parse_args(argv)
    sink = Receiver(lifetime=3600)
    try:
        rows = [run(pending, args, sink) for pending in (args.pending or [1000, 1_000_000])]
    finally:
        sink.stop()
    for row in rows:
        print(
            f"{row['pending']:>9,} pending: claim {row['claim_ms']['nothing due']:.2f} ms"
            f" (nothing due) / {row['claim_ms']['all due']:.2f} ms (all due);"
            f" RSS idle {row['idle_mb']['VmRSS']:.0f} MB, peak {row['drain_mb']['VmHWM']:.0f} MB;"
            f" ingest {row['ingest_per_s']:,.0f}/s ({row['ingest_us_per_request']:.0f} us);"
            f" drain {row['drain_per_s']:,.0f}/s",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
