"""Relayhook beside its peers, in one run, with one load generator, one sink and one pinning.

    python bench/compare.py                          # 8 s per cell: 5 servers x 3 bodies
    python bench/compare.py --quick                  # 1 s per cell: does it all run?
    python bench/compare.py --server relayhook-ingest --body small --py-spy /tmp/spy

Servers (each a fresh process per cell, pinned with taskset to --server-cpu):

    starlette          a bare Starlette app that answers 200 (bench/peers.py)
    relayhook-ingest   `relayhook serve`, the `generic` connector (one event per request),
                       SQLite synchronous = FULL, no hooks
    forward            a bare Starlette + aiohttp app that posts the body to the sink, then answers
    node-red           Node-RED 4.x (installed with npm outside the repo), one flow:
                       http in -> http request (to the sink) -> http response
    relayhook-forward  relayhook-ingest plus one hook posting `{{ event.data }}` to the sink:
                       the acknowledged requests/s (wrk) and the forwarded/s (at the sink) over the
                       same window; then the backlog is drained and the drain reported
    durable-ingest     the smallest honest durable forwarder (bench/durable.py): Starlette + one
                       SQLite file (WAL, synchronous = FULL, group commit), answers after the commit
    durable-forward    durable-ingest that then posts each stored body to the sink with aiohttp and
                       records the outcome in a second write; drained and counted as
                       relayhook-forward is

The load is wrk (Debian's; a Lua script posts the body), one thread, 50 keep-alive connections,
after an unmeasured warm-up; the sink is a raw asyncio + httptools server that counts requests
(bench/deliver.py's receiver). wrk, the sink and this script run on --load-cpu. All traffic goes
to 127.0.0.1. A benchmark, not a test: it asserts nothing, it reports (zero loss included), and
every server it started is stopped before it returns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cells import (
    DRAINED,
    SERVERS,
    Cell,
    ServerProcess,
    body_label,
    ensure_wrk,
    pending_deliveries,
    relayhook_counts,
    relayhook_process,
    run_wrk,
)
from deliver import Receiver, free_port
from durable import counts as durable_counts
from peers import ensure_node_red, node_red_command, write_node_red_files

PROJECT = Path(__file__).resolve().parents[1]
# The maintainers' bodies sit in shared/ beside the clone (in a git worktree, further up).
DEFAULT_BODIES = next(
    (
        folder / "shared" / "bench" / "bodies"
        for folder in PROJECT.parents
        if (folder / "shared" / "bench" / "bodies").is_dir()
    ),
    PROJECT.parent / "shared" / "bench" / "bodies",
)
BODIES = {"small": "small.json", "synthesis": "synthesis.json", "gmetri500": "gmetri500.json"}
DEFAULT_NODE_RED = Path(tempfile.gettempdir()) / "relayhook-bench" / "node-red"
DEFAULT_JSON = Path(tempfile.gettempdir()) / "relayhook-bench" / "compare.json"
DURABLE_DB = "durable.db"
QUIET_SECONDS = 1.0  # the sink saw nothing new for this long: a warm-up's deliveries are in
STALL_SECONDS = 30.0  # no delivery for this long while some are pending: the drain gave up


def _wait_sink_quiet(sink: Receiver, deadline: float) -> int:
    """Poll the sink until no request came for QUIET_SECONDS (bounded); its count."""
    last, changed = -1, time.monotonic()
    while True:
        count: int = sink.stats()["count"]
        now = time.monotonic()
        if count != last:
            last, changed = count, now
        if now - changed >= QUIET_SECONDS or now > deadline:
            return count
        time.sleep(0.1)


def _pending(server: ServerProcess) -> int:
    """What the server still has to send (-1: its database did not answer this time)."""
    if server.kind.startswith("durable"):
        try:
            return durable_counts(server.folder / DURABLE_DB).get("pending", 0)
        except sqlite3.OperationalError:
            return -1
    return pending_deliveries(server.folder)


def _stored(server: ServerProcess) -> dict[str, Any]:
    """What the stopped server's database holds, in relayhook_counts' shape."""
    if not server.kind.startswith("durable"):
        return relayhook_counts(server.folder)
    rows = durable_counts(server.folder / DURABLE_DB)
    return {
        "events": sum(rows.values()),
        "spooled": 0,
        "deliveries": {"succeeded": rows.get("delivered", 0), **rows},
    }


def _drain(server: ServerProcess, sink: Receiver, deadline: float) -> tuple[int, float]:
    """Wait until the server has no delivery left to send (bounded); (pending left, when the
    last one was seen go)."""
    last_count, changed = -1, time.monotonic()
    while True:
        pending = _pending(server)
        count = sink.stats()["count"]
        now = time.monotonic()
        if count != last_count:
            last_count, changed = count, now
        if pending == 0 or now > deadline or now - changed > STALL_SECONDS:
            return pending, now
        time.sleep(0.1)


def _start(kind: str, folder: Path, sink_url: str, args: argparse.Namespace) -> ServerProcess:
    port = free_port()
    if kind.startswith("relayhook"):
        hook_to = sink_url if kind == "relayhook-forward" else None
        return relayhook_process(
            folder, port, args.server_cpu, hook_to, args.hook_concurrency, args.traces_to
        )
    if kind.startswith("durable"):
        command = [
            sys.executable,
            str(PROJECT / "bench" / "durable.py"),
            "--port",
            str(port),
            "--database",
            str(folder / DURABLE_DB),
            "--concurrency",
            str(args.hook_concurrency),
        ]
        if kind == "durable-forward":
            command += ["--sink", sink_url]
        return ServerProcess(kind, folder, port, command, args.server_cpu, path="/in")
    if kind == "node-red":
        user_dir = folder / "node-red"
        write_node_red_files(user_dir, port, sink_url)
        return ServerProcess(
            kind,
            folder,
            port,
            node_red_command(args.node_red_dir, user_dir),
            args.server_cpu,
            path="/in",
            env={"NODE_ENV": "production"},
        )
    command = [
        sys.executable,
        str(PROJECT / "bench" / "peers.py"),
        "starlette",
        "--port",
        str(port),
    ]
    if kind == "forward":
        command = [*command[:2], "forward", "--port", str(port), "--sink", sink_url]
    return ServerProcess(kind, folder, port, command, args.server_cpu, path="/in")


def run_cell(kind: str, body_name: str, sink: Receiver, args: argparse.Namespace) -> Cell:
    body = args.bodies / BODIES[body_name]
    cell = Cell(kind, body_name, body_label(body), args.duration)
    with tempfile.TemporaryDirectory(prefix="relayhook-compare-", dir=args.dir) as name:
        folder = Path(name)
        server = _start(kind, folder, f"{sink.url}/hook", args)
        try:
            server.wait_healthy()
            sink.reset()  # nothing of the cell before counts for this one
            warmup = run_wrk(server.url, body, args.warmup, args.connections, folder)
            cell.warmup_requests = warmup["requests"] - warmup["status"]
            if kind in DRAINED:  # the warm-up's deliveries go before the clock starts
                _drain(server, sink, time.monotonic() + 120)
            cell.warmup_forwarded = _wait_sink_quiet(sink, time.monotonic() + 60)
            sink.reset()
            cell.measure(
                server, sink, server.url, body, args.connections, folder, _spy_to(args, cell)
            )
            if kind in DRAINED:
                deadline = time.monotonic() + max(120.0, 20 * args.duration)
                cell.pending_after_drain, drained = _drain(server, sink, deadline)
                cell.finish_forwarding(sink.arrivals()["times"], drained, server.cpu_seconds())
            elif kind in ("forward", "node-red"):
                cell.finish_forwarding(sink.arrivals()["times"], None, server.cpu_seconds())
        except Exception as exc:  # noqa: BLE001 - one broken cell must not hide the others
            cell.failed = f"{type(exc).__name__}: {exc}\n{server.log_tail()}"
        finally:
            server.stop()
        if kind.startswith(("relayhook", "durable")) and not cell.failed:
            cell.stored = _stored(server)
    return cell


def _spy_to(args: argparse.Namespace, cell: Cell) -> Path | None:
    if args.py_spy is None or not cell.kind.startswith("relayhook"):
        return None
    return args.py_spy / f"{cell.kind}-{cell.body}.speedscope.json"


# --- the machine and the report ------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine(args: argparse.Namespace, node_red: str | None) -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    wrk = shutil.which("wrk")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "node_red": node_red,
        "node": _first_line(["node", "--version"]) if node_red else None,
        "wrk": _first_line([wrk, "--version"]) if wrk else None,
        "packages": {
            p: _version(p)
            for p in ("starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "httpx")
        },
        "pinning": {"servers": args.server_cpu, "load_and_sink": args.load_cpu},
        "connections": args.connections,
        "seconds_per_cell": args.duration,
        "warmup_seconds": args.warmup,
        "hook_concurrency": args.hook_concurrency,
        "load_average": os.getloadavg()[0],
    }


def _first_line(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return (done.stdout or done.stderr).strip().splitlines()[0]


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _ratio(top: float | None, bottom: float | None) -> str:
    return f" ({top / bottom:.2f}x)" if top is not None and bottom else ""


def markdown(cells: list[Cell], about: dict[str, Any]) -> str:
    by = {(c.kind, c.body): c for c in cells}
    node_red = f"Node-RED {about['node_red']}" if about["node_red"] else "Node-RED"
    titles = {
        "starlette": "bare Starlette, answers 200",
        "relayhook-ingest": "Relayhook, ingest only (x bare Starlette)",
        "forward": "Starlette + aiohttp, forwards then answers",
        "node-red": f"{node_red}, forwards",
        "relayhook-forward": "Relayhook + hook, acknowledged/s",
        "forwarded": f"Relayhook, forwarded/s (x {node_red})",
        "durable-ingest": "durable Starlette + SQLite FULL, ingest only (Relayhook's ingest x it)",
        "durable-forward": "durable + aiohttp, forwarded/s (Relayhook's forwarded x it)",
    }
    lines = [
        "| request body | " + " | ".join(titles.values()) + " |",
        "|" + " --- |" * (len(titles) + 1),
    ]
    for body in dict.fromkeys(c.body for c in cells):
        rate = {kind: (by[(kind, body)].rate if (kind, body) in by else None) for kind in SERVERS}
        label = next(c.label for c in cells if c.body == body)
        forwarded = by.get(("relayhook-forward", body))
        sink_rate = forwarded.forwarded_per_s if forwarded else None
        durable = by.get(("durable-forward", body))
        durable_rate = durable.forwarded_per_s if durable else None
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    _figure(rate["starlette"]),
                    _figure(rate["relayhook-ingest"])
                    + _ratio(rate["relayhook-ingest"], rate["starlette"]),
                    _figure(rate["forward"]),
                    _figure(rate["node-red"]),
                    _figure(rate["relayhook-forward"]),
                    _figure(sink_rate) + _ratio(sink_rate, rate["node-red"]),
                    _figure(rate["durable-ingest"])
                    + _ratio(rate["relayhook-ingest"], rate["durable-ingest"]),
                    _figure(durable_rate) + _ratio(sink_rate, durable_rate),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


DETAIL_COLUMNS = [
    ("label", "body"),
    ("kind", "server"),
    ("requests", "2xx"),
    ("rate", "req/s"),
    ("errors", "errors"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("server_cpu_pct", "server CPU %"),
    ("server_us_per_request", "server CPU us/request"),
    ("load_cpu_pct", "wrk + sink CPU %"),
    ("other_cpu_pct", "others' CPU %"),
    ("load_average", "load avg 1 min"),
    ("forwarded_per_s", "at sink /s (window)"),
    ("drain_seconds", "drain s"),
    ("delivered", "delivered (after drain)"),
    ("server_us_per_forwarded", "server CPU us/forwarded (to the drain's end)"),
    ("loss", "loss"),
]


def detail_markdown(cells: list[Cell]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in DETAIL_COLUMNS) + " |",
        "|" + " --- |" * len(DETAIL_COLUMNS),
    ]
    for cell in cells:
        row = cell.row()
        lines.append(
            "| " + " | ".join(_cell_text(row.get(key)) for key, _ in DETAIL_COLUMNS) + " |"
        )
    return "\n".join(lines)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def report(cells: list[Cell], about: dict[str, Any]) -> str:
    head = (
        f"{about['date']}; nproc {about['nproc']}, {about['cpu']}; Linux {about['kernel']};"
        f" Python {about['python']}; SQLite {about['sqlite']}; {about['wrk'] or 'wrk'};"
        f" Node.js {about['node'] or '-'}; servers on CPU {about['pinning']['servers']},"
        f" wrk + sink on CPU {about['pinning']['load_and_sink']};"
        f" {about['connections']} connections, {about['seconds_per_cell']} s per cell;"
        f" load average (1 min) at the start {about['load_average']:.1f}, per cell in the"
        f" detail table"
    )
    parts = [head, markdown(cells, about), detail_markdown(cells)]
    for cell in cells:
        if cell.failed:
            parts.append(f"FAILED {cell.kind} {cell.body}: {cell.failed}")
        elif cell.loss:
            parts.append(f"WARNING {cell.kind} {cell.body}: {cell.loss}")
    return "\n\n".join(parts)


# --- the command ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server",
        action="append",
        choices=SERVERS,
        help="measure this server (repeatable; default: all)",
    )
    parser.add_argument(
        "--body",
        action="append",
        choices=list(BODIES),
        help="with this body (repeatable; default: all)",
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per cell (default: 8)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="unmeasured seconds of load first (default: 2)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 s per cell and 1 s of warm-up: a smoke run"
    )
    parser.add_argument(
        "--connections", type=int, default=50, help="wrk's keep-alive connections (default: 50)"
    )
    parser.add_argument(
        "--hook-concurrency",
        type=int,
        default=64,
        help="relayhook-forward: the hook's concurrency; durable-forward: its"
        " forwards in flight (default: 64)",
    )
    parser.add_argument(
        "--server-cpu", type=int, default=0, help="the CPU every server is pinned to (default: 0)"
    )
    parser.add_argument(
        "--load-cpu",
        type=int,
        default=1,
        help="the CPU of wrk, the sink and this script (default: 1)",
    )
    parser.add_argument(
        "--no-node-red",
        action="store_true",
        help="leave Node-RED out (no npm here); its column reads n/a",
    )
    parser.add_argument(
        "--node-red-dir",
        type=Path,
        default=DEFAULT_NODE_RED,
        help=f"where Node-RED is (installed with npm if missing; default: {DEFAULT_NODE_RED})",
    )
    parser.add_argument(
        "--bodies",
        type=Path,
        default=DEFAULT_BODIES,
        help=f"the maintainers' load bodies (default: {DEFAULT_BODIES})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the temporary databases go (default: the system temp dir)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the Relayhook cells with py-spy (speedscope files in DIR)",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="Relayhook with [tracing] on, its spans posted over OTLP/HTTP to a"
        " second sink of their own (on --load-cpu)",
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where the results go as JSON (default: {DEFAULT_JSON})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 1, 1
    if min(args.duration, args.warmup, args.connections) < 1:
        raise SystemExit("--duration, --warmup and --connections must be at least 1")
    missing = [n for n in BODIES.values() if not (args.bodies / n).is_file()]
    if missing:
        raise SystemExit(f"no {', '.join(missing)} in {args.bodies} (--bodies)")
    kinds = [k for k in args.server or SERVERS if not (args.no_node_red and k == "node-red")]
    try:
        ensure_wrk()
        node_red = ensure_node_red(args.node_red_dir) if "node-red" in kinds else None
    except (RuntimeError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"cannot run the benchmark: {exc}") from exc
    cpus = os.sched_getaffinity(0)
    if {args.server_cpu, args.load_cpu} - cpus:
        raise SystemExit(f"--server-cpu and --load-cpu must be among {sorted(cpus)}")
    if args.server_cpu == args.load_cpu:
        print("WARNING: servers and load share one CPU", file=sys.stderr)
    os.sched_setaffinity(0, {args.load_cpu})  # this script, and so the sink and wrk
    about = machine(args, node_red)
    cells: list[Cell] = []
    sink = Receiver(lifetime=3600 * 3)
    traces = Receiver(lifetime=3600 * 3) if args.tracing else None  # answers 200, counts
    args.traces_to = f"{traces.url}/hook/v1/traces" if traces else None  # counted, 200
    about["tracing"] = args.tracing
    try:
        for kind in kinds:
            for body in args.body or list(BODIES):
                print(f"{kind} x {body} ({args.duration} s)...", file=sys.stderr, flush=True)
                cells.append(run_cell(kind, body, sink, args))
    finally:
        sink.stop()
        if traces is not None:
            traces.stop()
    text = report(cells, about)
    print(text)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(
        json.dumps(
            {"machine": about, "cells": [c.row() for c in cells], "markdown": text}, indent=2
        ),
        encoding="utf-8",
    )
    print(f"\nJSON: {args.json_out}", file=sys.stderr)
    return 1 if any(c.failed for c in cells) else 0


if __name__ == "__main__":
    raise SystemExit(main())
