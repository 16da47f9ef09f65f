"""The ingest benchmark: `relayhook serve` in a subprocess, load over 127.0.0.1, figures out.

    python bench/ingest.py                          # every scenario, synchronous = FULL
    python bench/ingest.py --synchronous NORMAL --scenario gmetri-paced --json
    python bench/ingest.py --store-url postgresql://postgres@127.0.0.1:5432/postgres

Scenarios (each on a fresh server and an empty database, so none inherits another's backlog):

    gmetri-paced   500-row GMetri batches at a fixed rate (default 5/s), open loop
    gmetri-max     GMetri batches from N closed-loop clients: the ceiling
    synthesis-max  one-item SynthesisVR arrays (a new uuid each) from N closed-loop clients
    mixed          gmetri-paced plus closed-loop SynthesisVR: its latency under GMetri load

The load runs in worker processes (one per stream), never in this one, so that the client's CPU
is measured apart from the server's and the orchestration costs neither. A benchmark, not a test:
it asserts nothing, it reports. Traffic goes to 127.0.0.1 only; the server is always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import queue
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from stores import DEFAULT_URL, RunStore, is_postgres

HOST = "127.0.0.1"
PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_BODIES = PROJECT.parent / "shared" / "bench" / "bodies"
SCENARIOS = ("gmetri-paced", "gmetri-max", "synthesis-max", "mixed")
GMETRI_TOKEN = "bench-gmetri-relay-0001"
SYNTHESIS_TOKEN = "bench-synthesis-relay-0001"
SYNTHESIS_DEADLINE = 2.0  # SynthesisVR gives up after 2 s
STARTUP_SECONDS = 30.0
STOP_SECONDS = 15.0
MAX_IN_FLIGHT = 256  # open loop: past this many unanswered requests, the server has lost
CLK_TCK = os.sysconf("SC_CLK_TCK")

CONFIG = """\
[server]
host = "{host}"
port = {port}

[storage]
url = "{store_url}"
synchronous = "{synchronous}"

[[relays]]
name = "gmetri"
connector = "gmetri"
token = "{gmetri_token}"
secret = "{gmetri_secret}"

[[relays]]
name = "synthesis"
connector = "synthesisvr"
token = "{synthesis_token}"

[outcomes]
record = {outcomes}

[watch]
shapes = {shapes}
"""

# --hooks: four inactive hooks (their deliveries wait, paused: nothing is sent), one of each
# routing outcome for a GMetri variables batch: condition false (quizCompleted is false in
# every row), queued (paused), event type not subscribed, relay not subscribed.
HOOKS = """
[delivery]
allow_cidrs = ["127.0.0.1/32"]

[[hooks]]
name = "quiz"
events = ["gmetri.variables.changed"]
when = "{{ event.data.quizCompleted }}"
url = "http://127.0.0.1:9/quiz"
active = false

[[hooks]]
name = "scores"
events = ["gmetri.variables.changed"]
when = "{{ event.data.score > 50 }}"
url = "http://127.0.0.1:9/scores"
active = false

[[hooks]]
name = "rules"
events = ["gmetri.rule.*"]
url = "http://127.0.0.1:9/rules"
active = false

[[hooks]]
name = "sessions"
events = ["*"]
relays = ["synthesis"]
url = "http://127.0.0.1:9/sessions"
active = false
"""


# --- load: runs in worker processes --------------------------------------------------------


@dataclass
class Stream:
    """One stream of load: what to post where, and how (paced at `rate`, or `clients` closed)."""

    name: str
    url: str
    body: bytes
    headers: dict[str, str]
    expect_events: int
    duration: float
    timeout: float
    warmup: int
    max_requests: int
    rate: float | None = None
    clients: int = 1
    unique_uuid: str | None = None  # replaced by a fresh uuid in every request's body


@dataclass
class Outcome:
    """What a stream saw. Latencies in seconds, of answered 200s only."""

    name: str
    latencies: list[float] = field(default_factory=list)
    events: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    warmup_events: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    max_send_lag: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def _body_for(stream: Stream) -> bytes:
    if stream.unique_uuid is None:
        return stream.body
    return stream.body.replace(stream.unique_uuid.encode(), str(uuid.uuid4()).encode())


async def _post(
    client: httpx.AsyncClient, stream: Stream, outcome: Outcome, started: float, record: bool = True
) -> None:
    """One request; latency from `started` (the due time, for paced streams) to the 200."""
    try:
        response = await client.post(stream.url, content=_body_for(stream), headers=stream.headers)
    except httpx.TimeoutException:
        outcome.error("timeout")
        return
    except httpx.HTTPError as exc:
        outcome.error(type(exc).__name__)
        return
    latency = time.monotonic() - started
    if response.status_code != 200:
        outcome.error(f"http {response.status_code}")
        return
    accepted = int(response.json()["accepted"])
    if accepted != stream.expect_events:
        outcome.error(f"accepted {accepted}")
    if not record:
        outcome.warmup_events += accepted
        return
    outcome.events += accepted
    outcome.latencies.append(latency)


async def _paced(client: httpx.AsyncClient, stream: Stream, outcome: Outcome, start: float) -> None:
    """Open loop: request i is due at start + i/rate, sent then whether or not earlier ones
    were answered. Latency counts from the due time, so a late sender cannot hide a slow server."""
    assert stream.rate is not None
    in_flight: set[asyncio.Task[None]] = set()
    for i in range(min(int(stream.rate * stream.duration), stream.max_requests)):
        due = start + i / stream.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        outcome.max_send_lag = max(outcome.max_send_lag, time.monotonic() - due)
        if len(in_flight) >= MAX_IN_FLIGHT:
            outcome.error("not sent: too many unanswered")
            continue
        task = asyncio.create_task(_post(client, stream, outcome, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight, timeout=stream.timeout + 5)


async def _closed(
    client: httpx.AsyncClient, stream: Stream, outcome: Outcome, start: float
) -> None:
    """Closed loop: `clients` tasks, each sending its next request when the last is answered."""
    end = start + stream.duration
    budget = [stream.max_requests]

    async def one_client() -> None:
        while time.monotonic() < end and budget[0] > 0:
            budget[0] -= 1
            await _post(client, stream, outcome, time.monotonic())

    await asyncio.gather(*(one_client() for _ in range(stream.clients)))


async def _run_stream(stream: Stream, ready: Callable[[], Awaitable[None]]) -> Outcome:
    outcome = Outcome(stream.name)
    connections = MAX_IN_FLIGHT if stream.rate is not None else stream.clients
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    # trust_env=False: no proxy from the environment; the traffic stays on 127.0.0.1.
    async with httpx.AsyncClient(limits=limits, timeout=stream.timeout, trust_env=False) as client:
        for _ in range(stream.warmup):  # opens a connection, warms the server's paths
            await _post(client, stream, outcome, time.monotonic(), record=False)
        await ready()
        start, cpu = time.monotonic(), time.process_time()
        run = _paced if stream.rate is not None else _closed
        await run(client, stream, outcome, start)
        outcome.elapsed = time.monotonic() - start
        outcome.cpu_seconds = time.process_time() - cpu
    return outcome


def _worker(stream: Stream, barrier: Any, results: Any) -> None:
    """A worker process: warm up, meet the others at the barrier, load, send the outcome back."""

    async def ready() -> None:
        await asyncio.to_thread(barrier.wait, STARTUP_SECONDS)

    try:
        results.put(asdict(asyncio.run(_run_stream(stream, ready))))
    except BaseException as exc:  # noqa: B036 - the parent must hear of any failure, then exit
        barrier.abort()
        results.put({"name": stream.name, "failed": f"{type(exc).__name__}: {exc}"})


# --- the server ----------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has used (all cores, steal and idle excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / CLK_TCK


def wait_quiet(below: float, limit: float = 180.0) -> float:
    """Wait (at most `limit` s) until the machine's other work uses less than `below`% of one
    core over a second; the share last seen."""
    deadline = time.monotonic() + limit
    while True:
        busy, started = machine_busy_seconds(), time.monotonic()
        time.sleep(1.0)
        share = 100 * (machine_busy_seconds() - busy) / (time.monotonic() - started)
        if share < below or time.monotonic() >= deadline:
            return share


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`relayhook serve` on a fresh config and database in `folder`; stop() is idempotent."""

    def __init__(
        self,
        folder: Path,
        synchronous: str,
        store_url: str = DEFAULT_URL,
        hooks: bool = False,
        outcomes: bool = True,
        shapes: bool = True,
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.gmetri_secret = secrets.token_urlsafe(18)
        self.store = RunStore(store_url, folder)
        config = folder / "relayhook.toml"
        config.write_text(
            CONFIG.format(
                host=HOST,
                port=self.port,
                synchronous=synchronous,
                store_url=self.store.url,
                gmetri_token=GMETRI_TOKEN,
                gmetri_secret=self.gmetri_secret,
                synthesis_token=SYNTHESIS_TOKEN,
                outcomes="true" if outcomes else "false",
                shapes="true" if shapes else "false",
            )
            + (HOOKS if hooks else ""),
            encoding="utf-8",
        )
        # No RELAYHOOK_* overrides from this shell; this tree's relayhook, wherever we run.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYHOOK_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
        self.log = (folder / "server.log").open("wb")
        command = [
            sys.executable,
            "-m",
            "relayhook.cli",
            "serve",
            "--config",
            str(config),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}:\n" + self.log_tail()
                )
            try:
                if (
                    httpx.get(self.base_url + "/healthz", timeout=1.0, trust_env=False).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no /healthz within {STARTUP_SECONDS:.0f} s:\n" + self.log_tail())

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process, all its threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def log_tail(self) -> str:
        self.log.flush()
        return (self.folder / "server.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """SIGTERM (a clean close of the store), SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_SECONDS)
        self.log.close()

    def stored_events(self) -> int:
        count: int = self.store.query("SELECT count(*) FROM events")[0][0]
        return count


# --- scenarios -----------------------------------------------------------------------------


def _streams(scenario: str, server: Server, args: argparse.Namespace) -> list[Stream]:
    gmetri_body = (args.bodies / "gmetri500.json").read_bytes()
    synthesis_body = (args.bodies / "synthesis.json").read_bytes()
    gmetri = Stream(
        "gmetri",
        f"{server.base_url}/in/{GMETRI_TOKEN}",
        gmetri_body,
        # GMetri sends the string typed in its form after "Basic ", as is.
        {"Content-Type": "application/json", "Authorization": f"Basic {server.gmetri_secret}"},
        expect_events=len(json.loads(gmetri_body)["data"]["rows"]),
        duration=args.duration,
        timeout=args.timeout,
        warmup=args.warmup,
        max_requests=args.max_requests,
    )
    synthesis = replace(
        gmetri,
        name="synthesis",
        url=f"{server.base_url}/in/{SYNTHESIS_TOKEN}",
        body=synthesis_body,
        headers={"Content-Type": "application/json"},
        expect_events=1,
        unique_uuid=json.loads(synthesis_body)[0]["uuid"],
    )
    paced = replace(gmetri, rate=args.rate)
    return {
        "gmetri-paced": [replace(paced, name=scenario)],
        "gmetri-max": [replace(gmetri, name=scenario, clients=args.clients)],
        "synthesis-max": [replace(synthesis, name=scenario, clients=args.clients)],
        "mixed": [
            replace(paced, name="mixed: gmetri"),
            replace(synthesis, name="mixed: synthesis", clients=args.mixed_clients),
        ],
    }[scenario]


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def _row(
    stream: Stream, outcome: dict[str, Any], server: dict[str, float], synchronous: str
) -> dict[str, Any]:
    ordered = sorted(outcome["latencies"])
    elapsed = outcome["elapsed"] or float("nan")
    ms = {f"p{p}_ms": round(_percentile(ordered, p) * 1000, 1) for p in (50, 90, 99)}
    return {
        "scenario": stream.name,
        "synchronous": synchronous,
        "load": f"{stream.rate:g}/s" if stream.rate is not None else f"{stream.clients} closed",
        "seconds": round(elapsed, 1),
        "requests": len(ordered),
        "requests_per_s": round(len(ordered) / elapsed, 1),
        "events_per_s": round(outcome["events"] / elapsed),
        **ms,
        "max_ms": round((ordered[-1] if ordered else float("nan")) * 1000, 1),
        "over_2s": sum(1 for latency in ordered if latency > SYNTHESIS_DEADLINE),
        "errors": sum(outcome["errors"].values()),
        "error_kinds": outcome["errors"],
        "max_send_lag_ms": round(outcome["max_send_lag"] * 1000, 1),
        "client_cpu_pct": round(100 * outcome["cpu_seconds"] / elapsed),
        **server,
    }


def run_scenario(scenario: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="relayhook-bench-", dir=args.dir) as folder:
        server = Server(
            Path(folder),
            args.synchronous,
            args.store_url,
            hooks=args.hooks,
            outcomes=not args.no_outcomes,
            shapes=not args.no_shapes,
        )
        try:
            try:
                server.wait_healthy()
                streams = _streams(scenario, server, args)
                outcomes, server_figures = _load(server, streams, args)
            finally:
                server.stop()
            stored = server.stored_events()
        finally:
            server.store.drop()  # a PostgreSQL run's database
    acked = sum(o["events"] + o["warmup_events"] for o in outcomes.values())
    if stored < acked:
        print(f"WARNING {scenario}: {acked} events acknowledged, {stored} stored", file=sys.stderr)
    server_figures["stored_events"] = stored
    server_figures["store"] = "postgresql" if is_postgres(args.store_url) else "sqlite"
    return [_row(s, outcomes[s.name], server_figures, args.synchronous) for s in streams]


def _parts(stream: Stream, procs: int) -> list[Stream]:
    """A closed-loop stream's clients spread over up to `procs` worker processes."""
    if stream.rate is not None or procs == 1:
        return [stream]
    count = min(procs, stream.clients)
    sizes = [stream.clients // count + (i < stream.clients % count) for i in range(count)]
    budget = -(-stream.max_requests // count)
    return [replace(stream, clients=size, max_requests=budget) for size in sizes]


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(parts[0], latencies=[], errors={})
    for key in ("events", "warmup_events", "cpu_seconds"):
        merged[key] = sum(part[key] for part in parts)
    for key in ("elapsed", "max_send_lag"):
        merged[key] = max(part[key] for part in parts)
    for part in parts:
        merged["latencies"] += part["latencies"]
        for kind, count in part["errors"].items():
            merged["errors"][kind] = merged["errors"].get(kind, 0) + count
    return merged


def _load(
    server: Server, streams: list[Stream], args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    parts = [part for stream in streams for part in _parts(stream, args.procs)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(parts) + 1)
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(part, barrier, results), daemon=True)
        for part in parts
    ]
    profiler = None
    try:
        for worker in workers:
            worker.start()
        barrier.wait(STARTUP_SECONDS)
        cpu, busy, start = server.cpu_seconds(), machine_busy_seconds(), time.monotonic()
        if args.py_spy is not None:
            profiler = _start_py_spy(args, server, streams[0].name)
        reported: list[dict[str, Any]] = []
        deadline = start + args.duration + args.timeout + 30
        while len(reported) < len(parts) and time.monotonic() < deadline:
            try:
                outcome = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if "failed" in outcome:
                raise RuntimeError(f"worker {outcome['name']} failed: {outcome['failed']}")
            reported.append(outcome)
        if len(reported) < len(parts):
            raise RuntimeError("a worker did not report in time")
        wall = time.monotonic() - start
        server_cpu = server.cpu_seconds() - cpu
        # The rest of the machine: other people's work would make these figures worse.
        clients = sum(o["cpu_seconds"] for o in reported)
        others = machine_busy_seconds() - busy - server_cpu - clients
        figures = {
            "server_cpu_pct": round(100 * server_cpu / wall),
            "other_cpu_pct": max(0, round(100 * others / wall)),
            "server_peak_rss_mb": round(server.peak_rss_mb(), 1),
            "client_processes": len(parts),
        }
        outcomes = {s.name: _merge([o for o in reported if o["name"] == s.name]) for s in streams}
        return outcomes, figures
    finally:
        if profiler is not None:
            profiler.wait(args.duration + 60)
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()


def _start_py_spy(args: argparse.Namespace, server: Server, name: str) -> subprocess.Popen[bytes]:
    """Sample the server (all threads, idle ones too) for the measured span."""
    args.py_spy.mkdir(parents=True, exist_ok=True)
    out = args.py_spy / f"{name.replace(': ', '-')}-{args.synchronous.lower()}.txt"
    beside = Path(sys.executable).parent / "py-spy"  # installed in this venv, not activated
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if py_spy is None:
        raise RuntimeError("--py-spy: no py-spy here; `pip install py-spy` first")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server.process.pid),
            "--duration",
            str(int(args.duration)),
            "--rate",
            "200",
            "--threads",
            "--idle",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- the machine and the report ------------------------------------------------------------


def _filesystem(path: Path) -> str:
    best = ("?", "")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount, kind, *_ = line.split()
        if str(path.resolve()).startswith(mount) and len(mount) >= len(best[1]):
            best = (kind, mount)
    return best[0]


def _fdatasync_ms(folder: Path, count: int = 30) -> float:
    """Median time of a 4 KiB append + fdatasync: what a SQLite commit costs at least."""
    times = []
    with tempfile.NamedTemporaryFile(dir=folder) as probe:
        for _ in range(count):
            started = time.monotonic()
            probe.write(b"x" * 4096)
            probe.flush()
            os.fdatasync(probe.fileno())
            times.append(time.monotonic() - started)
    return round(statistics.median(times) * 1000, 2)


def machine(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.dir or tempfile.gettempdir())
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "filesystem": _filesystem(folder),
        "fdatasync_ms": _fdatasync_ms(folder),
    }


COLUMNS = [
    ("scenario", "scenario"),
    ("store", "store"),
    ("synchronous", "sync"),
    ("load", "load"),
    ("requests", "requests"),
    ("requests_per_s", "req/s"),
    ("events_per_s", "events/s"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("over_2s", "> 2 s"),
    ("errors", "errors"),
    ("server_cpu_pct", "server CPU %"),
    ("client_cpu_pct", "client CPU %"),
    ("other_cpu_pct", "other CPU %"),
    ("server_peak_rss_mb", "server peak RSS MB"),
]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join(" --- " for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(str(row[key]) for key, _ in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run this scenario (repeatable; default: all, in order)",
    )
    parser.add_argument(
        "--hooks",
        action="store_true",
        help="four inactive hooks, one per routing outcome (see HOOKS)",
    )
    parser.add_argument(
        "--no-shapes",
        action="store_true",
        help="[watch] shapes = false: ingest without learning payload shapes",
    )
    parser.add_argument(
        "--no-outcomes",
        action="store_true",
        help="[outcomes] record = false: route without recording outcomes",
    )
    parser.add_argument(
        "--synchronous",
        default="FULL",
        choices=["NORMAL", "FULL", "EXTRA"],
        help="[storage] synchronous of the server (default: FULL)",
    )
    parser.add_argument(
        "--store-url",
        default=DEFAULT_URL,
        help="[storage] url; a postgresql:// URL names a server on which each"
        " run gets a new database, dropped after it (default: SQLite)",
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="measured seconds per scenario (default: 20)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=5.0,
        help="GMetri batches per second when paced (default: 5, GMetri's max)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=4,
        help="concurrent closed-loop clients of the *-max scenarios (default: 4)",
    )
    parser.add_argument(
        "--mixed-clients",
        type=int,
        default=1,
        help="closed-loop SynthesisVR clients in `mixed` (default: 1)",
    )
    parser.add_argument(
        "--procs",
        type=int,
        default=1,
        help="worker processes a closed-loop stream's clients are spread over"
        " (default: 1; a paced stream always has one)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="unmeasured requests per stream before the clock starts (default: 5)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds before a request counts as an error (default: 30)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=500_000,
        help="cap on the requests of one stream (default: 500000)",
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
        help="where the temporary database goes (default: the system temp dir);"
        " it must be a real disk for synchronous to mean anything",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="also sample the server with py-spy (raw stacks into DIR)",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=None,
        metavar="PCT",
        help="before each scenario, wait (at most 180 s) until other processes"
        " use less than PCT%% of one core",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, not Markdown")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.duration, args.rate) <= 0 or min(args.clients, args.mixed_clients, args.procs) < 1:
        raise SystemExit("--duration and --rate must be positive; clients and procs at least 1")
    about = machine(args)
    rows: list[dict[str, Any]] = []
    for scenario in args.scenario or SCENARIOS:
        if args.quiet_below is not None:
            share = wait_quiet(args.quiet_below)
            print(f"other processes use {share:.0f}% of a core", file=sys.stderr)
        print(f"running {scenario} ({args.duration:g} s)...", file=sys.stderr, flush=True)
        rows += run_scenario(scenario, args)
    if args.json:
        print(json.dumps({"machine": about, "results": rows}, indent=2))
    else:
        print(
            f"{about['date']}; {about['cpus']} x {about['cpu']}; Python {about['python']};"
            f" Linux {about['kernel']}; database on {about['filesystem']}"
            f" (4 KiB fdatasync p50 {about['fdatasync_ms']} ms)\n"
        )
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
