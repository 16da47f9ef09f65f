"""The parts of bench/compare.py that start a server and measure one cell (one server x one
body): the server process pinned with taskset, wrk with a Lua script that posts the body and
reports in JSON, the CPU of everyone involved, and Relayhook's own counts from its database."""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deliver import Receiver, thread_cpu
from ingest import Server, machine_busy_seconds

from relayhook.spool import decode_entry
from relayhook.store import RequestRecord

HOST = "127.0.0.1"
PROJECT = Path(__file__).resolve().parents[1]
SERVERS = (
    "starlette",
    "relayhook-ingest",
    "forward",
    "node-red",
    "relayhook-forward",
    "durable-ingest",
    "durable-forward",
)
DRAINED = ("relayhook-forward", "durable-forward")  # forward after answering: drained, counted
WRK_TIMEOUT = "10s"  # a request slower than this counts as an error, not a latency
RELAY_TOKEN = "bench-generic-relay-0001"
UNFINISHED = ("pending", "failed", "claimed")  # deliveries that still have to go

RELAYHOOK_CONFIG = """\
[server]
host = "{host}"
port = {port}

[storage]
url = "sqlite:///relayhook.db"
synchronous = "FULL"

[delivery]
allow_cidrs = ["127.0.0.1/32"]
max_connections = {concurrency}

[[relays]]
name = "generic"
connector = "generic"
token = "{token}"
secret = ""
"""
RELAYHOOK_HOOK = """
[[hooks]]
name = "sink"
events = ["*"]
url = "{sink}"
body = "{{{{ event.data }}}}"
concurrency = {concurrency}
"""

# wrk: post the body on every connection; print the summary as one JSON line when done.
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open([==[{body}]==], "rb"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK-JSON {{"requests": %d, "duration_us": %d, "connect": %d,'
    .. ' "read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d,'
    .. ' "p99_us": %d, "max_us": %d}}\\n', summary.requests, summary.duration, e.connect,
    e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def body_label(path: Path) -> str:
    """`343 B JSON`, `122 B array`, `39 KB JSON`: as the issue's table names them."""
    size = path.stat().st_size
    kind = "array" if path.read_bytes().lstrip().startswith(b"[") else "JSON"
    return f"{size} B {kind}" if size < 10_000 else f"{size // 1000} KB {kind}"


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's packages if missing (as root, with apt-get)."""
    found = shutil.which("wrk")
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise RuntimeError("wrk is missing; install it (Debian: apt-get install -y wrk)")
    print("installing wrk with apt-get...", file=sys.stderr, flush=True)
    environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=environ, capture_output=True, timeout=600).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run([apt, "update", "-q"], env=environ, capture_output=True, timeout=600)
        subprocess.run(install, env=environ, capture_output=True, timeout=600, check=True)
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("apt-get installed no wrk")
    return found


def run_wrk(url: str, body: Path, seconds: int, connections: int, folder: Path) -> dict[str, Any]:
    """One wrk run (one thread): its summary, and the CPU seconds it used (from wait4)."""
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body.resolve()), encoding="utf-8")
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(script),
        url,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + seconds + 60
    usage: resource.struct_rusage | None = None
    while usage is None:
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            usage, process.returncode = rusage, os.waitstatus_to_exitcode(status)
        elif time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError("wrk did not finish in time")
        else:
            time.sleep(0.05)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    process.stdout.close()
    found = re.search(r"^WRK-JSON (.*)$", output, re.MULTILINE)
    if process.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output[-2000:]}")
    summary: dict[str, Any] = json.loads(found.group(1))
    summary["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return summary


class ServerProcess(Server):
    """A server under test: `command` under `taskset -c cpu` in its own session, its output in
    `folder`/server.log; ready when `GET /healthz` answers 200. Readiness, CPU, the log and
    stop() (SIGTERM, then SIGKILL) are ingest.py's `Server`'s; only the command differs."""

    def __init__(
        self,
        kind: str,
        folder: Path,
        port: int,
        command: list[str],
        cpu: int,
        path: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kind, self.folder, self.port = kind, folder, port
        self.url = self.base_url + path
        # No RELAYHOOK_* overrides from this shell; this tree's relayhook, wherever we run.
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAYHOOK_")}
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROJECT), environ.get("PYTHONPATH")])
        )
        self.log = (folder / "server.log").open("wb")
        self.process = subprocess.Popen(
            ["taskset", "-c", str(cpu), *command],
            cwd=folder,
            env={**environ, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def relayhook_process(
    folder: Path,
    port: int,
    cpu: int,
    sink: str | None,
    concurrency: int,
    traces_to: str | None = None,
) -> ServerProcess:
    """`relayhook serve`: the generic relay, SQLite FULL; one hook to `sink` if given; spans
    exported over OTLP/HTTP to `traces_to` if given (`[tracing]` on)."""
    config = RELAYHOOK_CONFIG.format(
        host=HOST, port=port, concurrency=concurrency, token=RELAY_TOKEN
    )
    if traces_to is not None:
        config += f'\n[tracing]\nenabled = true\nendpoint = "{traces_to}"\n'
    if sink is not None:
        config += RELAYHOOK_HOOK.format(sink=sink, concurrency=concurrency)
    (folder / "relayhook.toml").write_text(config, encoding="utf-8")
    # The key that seals secrets at rest, given so that no key file is written per cell.
    env = {"RELAYHOOK_SECRET_KEY": secrets.token_urlsafe(32)}
    command = [
        sys.executable,
        "-m",
        "relayhook.cli",
        "serve",
        "--config",
        "relayhook.toml",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    kind = "relayhook-forward" if sink else "relayhook-ingest"
    return ServerProcess(kind, folder, port, command, cpu, f"/in/{RELAY_TOKEN}", env)


def _database(folder: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{folder / 'relayhook.db'}?mode=ro", uri=True, timeout=5)


def pending_deliveries(folder: Path) -> int:
    """Deliveries still to send, read while the server runs (WAL: readers do not block it);
    -1 if the database could not answer this time."""
    try:
        with _database(folder) as db:
            marks = ", ".join("?" * len(UNFINISHED))
            count: int = db.execute(
                f"SELECT count(*) FROM deliveries WHERE status IN ({marks})", UNFINISHED
            ).fetchone()[0]
            return count
    except sqlite3.OperationalError:
        return -1


def relayhook_counts(folder: Path) -> dict[str, Any]:
    """Requests, events and deliveries by status, once the server stopped; and `spooled`: the
    requests acknowledged from the spool (the store did not answer within `store_timeout`, as
    under py-spy's pauses) and not yet in the database. They are kept, not lost: the next
    start stores them."""
    with _database(folder) as db:
        stored_ids = {request_id for (request_id,) in db.execute("SELECT id FROM requests")}
        return {
            "requests": dict(db.execute("SELECT status, count(*) FROM requests GROUP BY status")),
            "events": db.execute("SELECT count(*) FROM events").fetchone()[0],
            "deliveries": dict(
                db.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
            ),
            "spooled": sum(1 for record in _spooled(folder) if record.id not in stored_ids),
        }


def _spooled(folder: Path) -> list[RequestRecord]:
    path = folder / "relayhook.spool"
    if not path.exists():
        return []
    return [decode_entry(line) for line in path.read_bytes().splitlines() if line]


@dataclass
class Cell:
    """One server x one body: what wrk, the sink, /proc and the database said."""

    kind: str
    body: str
    label: str
    seconds: int
    wrk: dict[str, Any] = field(default_factory=dict)
    warmup_requests: int = 0
    warmup_forwarded: int = 0
    window: tuple[float, float] = (0.0, 0.0)
    cpu: dict[str, float] = field(default_factory=dict)
    forwarded_in_window: int | None = None
    delivered: int | None = None
    drain_seconds: float | None = None
    pending_after_drain: int | None = None
    stored: dict[str, Any] | None = None
    profile: str | None = None
    failed: str | None = None
    cpu_at_start: float = 0.0  # the server's CPU seconds when the measured run began
    load_average: float | None = None  # the machine's 1-minute load average at the window's end

    @property
    def requests(self) -> int:
        """Answers wrk counted as good (it counts 4xx and 5xx as `status` errors)."""
        return int(self.wrk.get("requests", 0) - self.wrk.get("status", 0))

    @property
    def rate(self) -> float | None:
        if not self.wrk or self.failed:
            return None
        return self.requests / (self.wrk["duration_us"] / 1e6)

    @property
    def forwarded_per_s(self) -> float | None:
        if self.forwarded_in_window is None or self.failed:
            return None
        return self.forwarded_in_window / (self.window[1] - self.window[0])

    def measure(
        self,
        server: ServerProcess,
        sink: Receiver,
        url: str,
        body: Path,
        connections: int,
        folder: Path,
        spy_to: Path | None,
    ) -> None:
        """The measured wrk run, with every process's CPU over it (and py-spy, if asked)."""
        spy = _start_py_spy(server.process.pid, self.seconds, spy_to) if spy_to else None
        busy, own, served, sunk = (
            machine_busy_seconds(),
            time.process_time(),
            server.cpu_seconds(),
            sink.cpu_seconds(),
        )
        threads = thread_cpu(server.process.pid)
        self.cpu_at_start = served
        start = time.monotonic()
        try:
            self.wrk = run_wrk(url, body, self.seconds, connections, folder)
        finally:
            end = time.monotonic()
            if spy is not None:
                spy.wait(self.seconds + 60)
        self.window = (start, end)
        self.load_average = os.getloadavg()[0]
        wall = end - start
        server_cpu = server.cpu_seconds() - served
        main, others_threads = (
            b - a for a, b in zip(threads, thread_cpu(server.process.pid), strict=True)
        )
        sink_cpu = sink.cpu_seconds() - sunk
        others = (
            machine_busy_seconds()
            - busy
            - server_cpu
            - sink_cpu
            - self.wrk["cpu_seconds"]
            - (time.process_time() - own)
        )
        self.cpu = {
            "server": 100 * server_cpu / wall,
            "wrk": 100 * self.wrk["cpu_seconds"] / wall,
            "sink": 100 * sink_cpu / wall,
            "others": max(0.0, 100 * others / wall),
            "server_main_thread": 100 * main / wall,
            "server_other_threads": 100 * others_threads / wall,
            "server_us_per_request": 1e6 * server_cpu / max(1, self.requests),
        }
        self.profile = str(spy_to) if spy_to else None

    def finish_forwarding(
        self, times: list[float], drained_at: float | None, server_cpu: float
    ) -> None:
        """What reached the sink: in the measured window, and in all (after the drain); and
        the server's CPU per forwarded request from the window's start to now, so that work
        left in a backlog at the window's end is counted too."""
        start, end = self.window
        self.forwarded_in_window = sum(1 for t in times if start <= t <= end)
        self.delivered = len(times)
        if drained_at is not None and times:
            self.drain_seconds = max(0.0, times[-1] - end)
        used = server_cpu - self.cpu_at_start
        self.cpu["server_us_per_forwarded"] = 1e6 * used / max(1, self.delivered)

    @property
    def loss(self) -> str | None:
        """What went missing, if anything: acknowledged but not stored, stored but not sent."""
        if self.failed:
            return None
        if self.kind in ("forward", "node-red") and (self.delivered or 0) < self.requests:
            return f"{self.requests} answered but only {self.delivered} reached the sink"
        if self.stored is None:
            return None
        acked = self.warmup_requests + self.requests
        events: int = self.stored["events"]
        spooled: int = self.stored.get("spooled", 0)  # kept, stored at the next start
        if events + spooled < acked:  # one event per request
            return f"{acked} acknowledged but {events} events stored ({spooled} spooled)"
        if self.kind in DRAINED:
            sent = self.stored["deliveries"].get("succeeded", 0)
            arrived = self.warmup_forwarded + (self.delivered or 0)
            if sent < events or arrived < events:
                return (
                    f"{events} events, {sent} deliveries succeeded, {arrived} reached the"
                    f" sink, {self.pending_after_drain} still pending after the drain"
                )
        return None

    def row(self) -> dict[str, Any]:
        """The cell as a flat dict (the JSON file's rows, the detail table's columns)."""
        data = asdict(self)
        errors = {k: self.wrk.get(k, 0) for k in ("connect", "read", "write", "status", "timeout")}
        data.update(
            requests=self.requests,
            rate=self.rate,
            errors=sum(errors.values()) or "",
            error_kinds=errors,
            forwarded_per_s=self.forwarded_per_s,
            p50_ms=self.wrk.get("p50_us", 0) / 1000,
            p99_ms=self.wrk.get("p99_us", 0) / 1000,
            server_cpu_pct=self.cpu.get("server"),
            server_us_per_request=self.cpu.get("server_us_per_request"),
            server_us_per_forwarded=self.cpu.get("server_us_per_forwarded"),
            load_cpu_pct=self.cpu.get("wrk", 0) + self.cpu.get("sink", 0) if self.cpu else None,
            other_cpu_pct=self.cpu.get("others"),
            loss="failed" if self.failed else (self.loss or "none"),
        )
        return data


def _start_py_spy(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling every thread of `pid` (on-CPU samples) for `seconds`, as speedscope."""
    out.parent.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).parent / "py-spy"  # installed in this venv, not activated
    py_spy = str(beside) if beside.exists() else "py-spy"
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--threads",
            "--gil",
            "--format",
            "speedscope",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
