"""The delivery benchmark: `relayhook serve` in a subprocess, a counting receiver in another,
deliveries per second, end-to-end latency, peak memory, and the raw rates of the HTTP clients.

    python bench/deliver.py                                   # every scenario, default figures
    python bench/deliver.py --scenario throughput --concurrency 16 --concurrency 64 --repeat 3
    python bench/deliver.py --scenario throughput --load live --py-spy /tmp/spy --json
    python bench/deliver.py --scenario throughput --workers 2 \
        --store-url postgresql://postgres@127.0.0.1:5432/postgres   # 1 web + 2 workers

Scenarios (each run on a fresh server, database and receiver):

    throughput  one hook (`events = ["*"]`, default body: the whole event as JSON) aimed at the
                receiver; N GMetri events (500-row batches). `--load preload` (default): the hook
                is deactivated through the API, the batches are posted, then the hook is
                activated, so only delivery is measured. `--load live`: the batches are posted
                as fast as the server acknowledges them while the dispatcher runs.
                Deliveries/s = (arrivals - 1) / (last arrival - first arrival), at the receiver.
    latency     one-item SynthesisVR requests (a new uuid each) at a steady rate, open loop;
                latency = arrival at the receiver - the moment the client sent the request.
    transport   in ONE process (this one), the raw request rates of the clients the dispatcher
                could use, against the same receiver: httpx's default transport (httpcore),
                httpx over our guarded aiohttp transport as delivery.http.make_http_client
                builds it, that transport called as Dispatcher._send calls it (its `send`),
                and plain aiohttp. Closed loop, N requests in flight.

Each run reports the server's CPU (main thread = the event loop, other threads = the SQLite
writer and readers) and its peak RSS (VmHWM). `--py-spy DIR` samples the server during the
throughput runs and summarises where its CPU goes. `--quiet-below PCT` waits (bounded) for a
moment when other processes use less than PCT% of the machine; every row says how busy it was.
`--server-prelude FILE` runs FILE in the server process first: a diagnostic for what-if
monkeypatches (what would a change gain?), never for the reference figures.

The receiver is a raw asyncio + httptools server on uvloop in its own process: it answers 200 at
once, counts requests, and keeps each arrival's time (time.monotonic: CLOCK_MONOTONIC, one clock
for every process of the machine) and its `x-bench-key` header. Load runs in its own process too.
A benchmark, not a test: it asserts nothing, it reports. Traffic goes to 127.0.0.1 only; every
wait has a deadline, every loop a bound, and the server and receiver are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from stores import DEFAULT_URL, RunStore, is_postgres

HOST = "127.0.0.1"
PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_BODIES = PROJECT.parent / "shared" / "bench" / "bodies"
SCENARIOS = ("throughput", "latency", "transport")
LOADS = ("preload", "live")
GMETRI_TOKEN = "bench-gmetri-relay-0001"
SYNTHESIS_TOKEN = "bench-synthesis-relay-0001"
HOOK = "bench"
STARTUP_SECONDS = 30.0
STOP_SECONDS = 20.0
STALL_SECONDS = 30.0  # no new arrival for this long: the run is given up
MAX_IN_FLIGHT = 256  # open loop: past this many unanswered requests, the server has lost
MAX_ARRIVALS = 2_000_000  # the receiver keeps at most this many arrival times
CLK_TCK = os.sysconf("SC_CLK_TCK")

CONFIG = """\
[server]
host = "{host}"
port = {port}

[storage]
url = "{store_url}"
synchronous = "{synchronous}"

[admin]
token = "{admin_token}"

[delivery]
allow_cidrs = ["127.0.0.1/32"]
max_connections = {max_connections}

[[relays]]
name = "gmetri"
connector = "gmetri"
token = "{gmetri_token}"
secret = "{gmetri_secret}"

[[relays]]
name = "synthesis"
connector = "synthesisvr"
token = "{synthesis_token}"

[[hooks]]
name = "{hook}"
events = ["*"]
url = "http://{host}:{receiver_port}/hook"
concurrency = {concurrency}
{extra}
"""
# The latency scenario's hook also says which event each request carries.
KEY_HEADER = 'headers = { "x-bench-key" = "{{ event.data.uuid }}" }'


# --- the receiver: its own process ---------------------------------------------------------


class _ReceiverState:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.times: list[float] = []
        self.keys: dict[str, float] = {}
        self.ids: set[bytes] = set()
        self.connections = 0


OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class _ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; /hook counts, /_stats, /_arrivals and /_reset are for us."""

    def __init__(self, state: _ReceiverState) -> None:
        import httptools

        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.error = httptools.HttpParserError
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.key: bytes | None = None
        self.webhook_id: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.state.connections += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.error:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.key, self.webhook_id = b"", None, None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"x-bench-key":
            self.key = value
        elif lower == b"webhook-id":
            self.webhook_id = value

    def on_message_complete(self) -> None:
        now = time.monotonic()
        state, transport = self.state, self.transport
        assert transport is not None
        if self.url.startswith(b"/hook"):
            state.count += 1
            if len(state.times) < MAX_ARRIVALS:
                state.times.append(now)
                if self.key is not None:
                    state.keys.setdefault(self.key.decode(), now)
                if self.webhook_id is not None:
                    state.ids.add(self.webhook_id)
            transport.write(OK_RESPONSE)
        else:
            transport.write(self._control())
        if not self.parser.should_keep_alive():
            transport.close()

    def _control(self) -> bytes:
        state = self.state
        if self.url.startswith(b"/_stats"):
            data: Any = {
                "count": state.count,
                "unique_ids": len(state.ids),
                "first": state.times[0] if state.times else None,
                "last": state.times[-1] if state.times else None,
                "connections": state.connections,
            }
        elif self.url.startswith(b"/_arrivals"):
            data = {"times": state.times, "keys": state.keys, "unique_ids": len(state.ids)}
        elif self.url.startswith(b"/_reset"):
            state.reset()
            data = {"reset": True}
        else:
            body = b"not found"
            return (b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        body = json.dumps(data).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        ) + body


def _receiver_main(port_out: Any, lifetime: float) -> None:
    """The receiver process: bind a free port on 127.0.0.1, send it back, serve until killed
    (or `lifetime` seconds: it never outlives a forgotten benchmark for long)."""
    import uvloop

    async def serve() -> None:
        state = _ReceiverState()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _ReceiverProtocol(state), HOST, 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        port_out.close()
        async with server:
            await asyncio.sleep(lifetime)

    uvloop.run(serve())


class Receiver:
    """The receiver process and a client for its control endpoints."""

    def __init__(self, lifetime: float) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self.process = context.Process(
            target=_receiver_main, args=(theirs, lifetime), daemon=True, name="bench-receiver"
        )
        self.process.start()
        theirs.close()
        if not ours.poll(STARTUP_SECONDS):
            self.stop()
            raise RuntimeError("the receiver did not start")
        self.port: int = ours.recv()
        self.url = f"http://{HOST}:{self.port}"
        self._control = httpx.Client(base_url=self.url, timeout=30.0, trust_env=False)

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self._control.get("/_stats").json()
        return data

    def arrivals(self) -> dict[str, Any]:
        data: dict[str, Any] = self._control.get("/_arrivals").json()
        return data

    def reset(self) -> None:
        self._control.post("/_reset")

    def cpu_seconds(self) -> float:
        assert self.process.pid is not None
        return _cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if hasattr(self, "_control"):
            self._control.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_SECONDS)


# --- load: runs in a worker process --------------------------------------------------------


@dataclass
class Load:
    """Batches posted closed loop by `clients` (count = batches), or one-item requests paced
    at `rate` for `duration` seconds (count = a cap), open loop."""

    url: str
    body: bytes
    headers: dict[str, str]
    count: int
    timeout: float
    clients: int = 1
    rate: float | None = None
    duration: float = 0.0
    unique_uuid: str | None = None  # replaced by a fresh uuid in every request's body


@dataclass
class LoadOutcome:
    events: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    sent: dict[str, float] = field(default_factory=dict)  # key -> monotonic send time
    acks: list[float] = field(default_factory=list)  # seconds from send to the 200
    max_send_lag: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _post(session: Any, load: Load, outcome: LoadOutcome) -> None:
    import aiohttp

    body, key = load.body, None
    if load.unique_uuid is not None:
        key = str(uuid.uuid4())
        body = body.replace(load.unique_uuid.encode(), key.encode())
    sent = time.monotonic()
    if key is not None:
        outcome.sent[key] = sent
    try:
        async with session.post(load.url, data=body, headers=load.headers) as response:
            payload = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        outcome.error(type(exc).__name__)
        return
    if response.status != 200:
        outcome.error(f"http {response.status}")
        return
    outcome.acks.append(time.monotonic() - sent)
    outcome.requests += 1
    outcome.events += int(json.loads(payload)["accepted"])


async def _run_load(load: Load) -> LoadOutcome:
    import aiohttp

    outcome = LoadOutcome()
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT if load.rate else load.clients)
    timeout = aiohttp.ClientTimeout(total=load.timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False
    ) as session:
        start = time.monotonic()
        if load.rate is None:
            budget = [load.count]

            async def one_client() -> None:
                while budget[0] > 0 and time.monotonic() - start < load.timeout:
                    budget[0] -= 1
                    await _post(session, load, outcome)

            await asyncio.gather(*(one_client() for _ in range(load.clients)))
        else:
            in_flight: set[asyncio.Task[None]] = set()
            for i in range(min(int(load.rate * load.duration), load.count)):
                due = start + i / load.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                outcome.max_send_lag = max(outcome.max_send_lag, time.monotonic() - due)
                if len(in_flight) >= MAX_IN_FLIGHT:
                    outcome.error("not sent: too many unanswered")
                    continue
                task = asyncio.create_task(_post(session, load, outcome))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.wait(in_flight, timeout=load.timeout)
        outcome.elapsed = time.monotonic() - start
    return outcome


def _load_worker(load: Load, results: Any) -> None:
    import uvloop

    try:
        results.put(asdict(uvloop.run(_run_load(load))))
    except BaseException as exc:  # noqa: B036 - the parent must hear of any failure
        results.put({"failed": f"{type(exc).__name__}: {exc}"})


class LoadProcess:
    def __init__(self, load: Load) -> None:
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.process = context.Process(
            target=_load_worker, args=(load, self.results), daemon=True, name="bench-load"
        )
        self.process.start()
        self.limit = load.timeout + load.duration + 30

    def result(self) -> dict[str, Any]:
        try:
            outcome: dict[str, Any] = self.results.get(timeout=self.limit)
        finally:
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
        if "failed" in outcome:
            raise RuntimeError(f"the load process failed: {outcome['failed']}")
        return outcome


# --- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int, under: str = "/proc/") -> float:
    """User + system CPU of a process, all its threads (or of one thread, under its task/)."""
    fields = Path(f"{under}{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a process's main thread (the event loop) and of all its other threads
    together (the SQLite writer, readers) so far."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seconds = _cpu_seconds(int(task.name), f"/proc/{pid}/task/")
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended
        if int(task.name) == pid:
            main += seconds
        else:
            other += seconds
    return main, other


class Server:
    """`relayhook serve` on a fresh config and database in `folder`; stop() is idempotent."""

    def __init__(
        self,
        folder: Path,
        *,
        synchronous: str,
        receiver_port: int,
        concurrency: int,
        key_header: bool,
        prelude: Path | None = None,
        store_url: str = DEFAULT_URL,
        workers: int = 0,
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.gmetri_secret = secrets.token_urlsafe(18)
        self.admin_token = secrets.token_urlsafe(24)
        self.store = RunStore(store_url, folder)
        config = folder / "relayhook.toml"
        config.write_text(
            CONFIG.format(
                host=HOST,
                port=self.port,
                synchronous=synchronous,
                store_url=self.store.url,
                admin_token=self.admin_token,
                max_connections=concurrency,
                gmetri_token=GMETRI_TOKEN,
                gmetri_secret=self.gmetri_secret,
                synthesis_token=SYNTHESIS_TOKEN,
                hook=HOOK,
                receiver_port=receiver_port,
                concurrency=concurrency,
                extra=KEY_HEADER if key_header else "",
            ),
            encoding="utf-8",
        )
        # No RELAYHOOK_* overrides from this shell; this tree's relayhook, wherever we run.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYHOOK_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
        self.log = (folder / "server.log").open("wb")
        command = [sys.executable, "-m", "relayhook.cli"]
        if prelude is not None:  # a diagnostic: see --server-prelude
            command = [sys.executable, "-c", PRELUDE_LAUNCHER, str(prelude.resolve())]
        command += ["serve", "--config", str(config), "--no-access-log", "--log-level", "warning"]
        # `workers`: this process takes requests (--role web) and that many `--role worker`
        # processes send (several processes share a PostgreSQL store).
        self.process = subprocess.Popen(
            command + (["--role", "web"] if workers else []),
            cwd=folder,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.workers = [
            subprocess.Popen(
                command + ["--role", "worker", "--port", str(free_port())],
                cwd=folder,
                env=env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(workers)
        ]
        self.api = httpx.Client(
            base_url=self.base_url,
            timeout=60.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {self.admin_token}"},
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
                if self.api.get("/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no /healthz within {STARTUP_SECONDS:.0f} s:\n" + self.log_tail())

    def set_hook(self, active: bool) -> None:
        action = "activate" if active else "deactivate"
        response = self.api.post(f"/api/hooks/{HOOK}/{action}")
        if response.status_code != 200:
            raise RuntimeError(f"{action}: {response.status_code} {response.text}")

    def cpu_seconds(self) -> float:
        """The CPU of every server process (web and workers)."""
        return sum(_cpu_seconds(p.pid) for p in (self.process, *self.workers))

    def thread_cpu(self) -> tuple[float, float]:
        return thread_cpu(self.process.pid)

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
        self.api.close()
        for process in (*self.workers, self.process):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_SECONDS)
        self.log.close()

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries per status and attempts, read from the database once the server stopped;
        then a PostgreSQL run's database is dropped."""
        try:
            counts = dict(
                self.store.query("SELECT status, count(*) FROM deliveries GROUP BY status")
            )
            counts["attempts"] = self.store.query("SELECT count(*) FROM attempts")[0][0]
            return counts
        finally:
            self.store.drop()


# `python -c PRELUDE_LAUNCHER FILE serve ...`: run FILE, then `python -m relayhook.cli serve ...`.
PRELUDE_LAUNCHER = (
    "import runpy, sys; path = sys.argv.pop(1);"
    " exec(compile(open(path).read(), path, 'exec'), {'__name__': '__prelude__'});"
    " runpy.run_module('relayhook.cli', run_name='__main__', alter_sys=True)"
)


# --- py-spy --------------------------------------------------------------------------------


class Profiler:
    """py-spy sampling every thread of `pid` (on-CPU samples only) until stop()."""

    RATE = 100

    def __init__(self, pid: int, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(self.RATE),
                "--threads",
                "--format",
                "raw",
                "--output",
                str(out),
                "--duration",
                "600",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> float:
        """Stop sampling (py-spy writes its file on SIGINT); the seconds sampled."""
        seconds = time.monotonic() - self.started
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return seconds


# Loop thread: a sample goes to the bucket of its innermost frame that matches a rule. Frames of
# asyncio itself (asyncio.timeout, create_task...) count for their caller; a sample in none is
# the event loop's own work (uvloop's I/O, callbacks, task steps: Runner.run as the leaf).
LOOP_RULES: list[tuple[str, Callable[[str, str], bool]]] = [
    (
        "attempt record (redaction, Attempt)",
        lambda fn, path: fn in ("OutboundRequest.record", "Dispatcher._secrets_of"),
    ),
    (
        "render (templates, JSON body, URL)",
        lambda fn, path: path.startswith(
            (
                "relayhook/core/templating.py",
                "relayhook/core/outbound.py",
                "jinja2/",
                "relayhook/core/events.py",
            )
        ),
    ),
    (
        "guarded transport (delivery/http.py, delivery/sender.py, ssrf.py)",
        lambda fn, path: path.startswith(
            ("relayhook/delivery/http.py", "relayhook/delivery/sender.py", "relayhook/core/ssrf.py")
        ),
    ),
    (
        "httpx (client, models)",
        lambda fn, path: path.startswith(("httpx/", "httpcore/", "h11/", "anyio/", "sniffio/")),
    ),
    (
        "aiohttp client (pool, protocol, yarl)",
        lambda fn, path: path.startswith(
            ("aiohttp/", "yarl/", "multidict/", "propcache/", "aiohappyeyeballs/")
        ),
    ),
    (
        "store calls on the loop (rows, submit, readers)",
        lambda fn, path: path.startswith("relayhook/store/"),
    ),
    (
        "dispatcher bookkeeping (claim round, retry.decide)",
        lambda fn, path: path.startswith(
            (
                "relayhook/delivery/dispatcher.py",
                "relayhook/core/retry.py",
                "relayhook/core/pacing.py",
            )
        ),
    ),
    (
        "ingress, mapping, routing",
        lambda fn, path: path.startswith(
            (
                "relayhook/ingress.py",
                "relayhook/core/mapping.py",
                "relayhook/core/routing.py",
                "relayhook/api.py",
                "relayhook/core/auth.py",
            )
        ),
    ),
    (
        "web server (uvicorn's protocol, starlette)",
        lambda fn, path: path.startswith(
            ("uvicorn/protocols/", "uvicorn/middleware/", "starlette/", "httptools/")
        ),
    ),
]
# Writer thread: the job a sample is in (outermost match), else the transaction around it.
WRITER_JOBS = {
    "claim_due": "claim (UPDATE ... RETURNING, then the event join)",
    "finish": "finish (attempt INSERT + delivery UPDATE)",
    "SQLiteStore.ingest.<locals>.job": "ingest (request, events, deliveries)",
    "set_hook_active": "pause / resume (API)",
}


def _frame(text: str) -> tuple[str, str]:
    """`func (path:line)` -> (func, path)."""
    func, _, rest = text.partition(" (")
    return func, rest.rsplit(":", 1)[0]


def summarize_profile(
    path: Path, seconds: float, rate: int = Profiler.RATE, top: int = 12
) -> dict[str, Any]:
    """Per thread: the share of the wall time it was on CPU; the loop thread's CPU by layer,
    the writer thread's by job; the functions with the most inclusive and self time."""
    wall = max(1.0, seconds * rate)  # the samples a thread busy all the time would have
    threads: collections.Counter[str] = collections.Counter()
    loop: collections.Counter[str] = collections.Counter()
    writer: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"
        frames = frames[1:] if frames[0].startswith("thread") else frames
        kind = (
            "loop"
            if thread == "MainThread"
            else "writer"
            if thread == "relayhook-sqlite-writer"
            else "readers and others"
        )
        threads[kind] += count
        if kind == "loop":
            parsed = [_frame(f) for f in frames]
            loop[_bucket(parsed)] += count
            for func, file in dict.fromkeys(parsed):
                inclusive[f"{func} ({file})"] += count
            if parsed:
                own[f"{parsed[-1][0]} ({parsed[-1][1]})"] += count
        elif kind == "writer":
            funcs = [_frame(f)[0] for f in frames]
            job = next((WRITER_JOBS[f] for f in funcs if f in WRITER_JOBS), None)
            if job is None:
                job = (
                    "BEGIN / COMMIT (fsync), savepoints"
                    if any(
                        f in ("GroupCommitWriter._commit_batch", "_run_in_savepoint") for f in funcs
                    )
                    else "queue, answering the loop"
                )
            writer[job] += count

    def shares(counter: collections.Counter[str], total: float) -> dict[str, float]:
        return {name: round(100 * n / total, 1) for name, n in counter.most_common()}

    loop_total = max(1, threads["loop"])
    # Frames in nearly every sample (the entry point down to the event loop) say nothing.
    inclusive = collections.Counter({k: n for k, n in inclusive.items() if n < 0.98 * loop_total})
    return {
        "seconds": round(seconds, 1),
        "busy_pct_of_wall": shares(threads, wall),
        "loop_pct_by_layer": shares(loop, loop_total),
        "writer_pct_of_wall_by_job": shares(writer, wall),
        "loop_top_inclusive_pct": dict(list(shares(inclusive, loop_total).items())[:top]),
        "loop_top_self_pct": dict(list(shares(own, loop_total).items())[:top]),
    }


def _bucket(frames: list[tuple[str, str]]) -> str:
    for func, path in reversed(frames):
        for name, rule in LOOP_RULES:
            if rule(func, path):
                return name
    return "event loop (uvloop: I/O, callbacks, task steps)"


# --- scenarios -----------------------------------------------------------------------------


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def _timeline(times: list[float]) -> list[int]:
    """Arrivals in each second from the first one."""
    counts: collections.Counter[int] = collections.Counter(int(t - times[0]) for t in times)
    return [counts[i] for i in range(max(counts, default=-1) + 1)]


def _rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")


def _wait_for_arrivals(receiver: Receiver, expected: int, deadline: float) -> dict[str, Any]:
    """Poll the receiver until `expected` requests arrived, none came for STALL_SECONDS, or
    the deadline passed; its last stats."""
    last_count, last_change = -1, time.monotonic()
    while True:
        stats = receiver.stats()
        now = time.monotonic()
        if stats["count"] != last_count:
            last_count, last_change = stats["count"], now
        if stats["count"] >= expected or now > deadline or now - last_change > STALL_SECONDS:
            return stats
        time.sleep(0.1)


def _bodies(args: argparse.Namespace) -> tuple[bytes, int, bytes, str]:
    gmetri = (args.bodies / "gmetri500.json").read_bytes()
    synthesis = (args.bodies / "synthesis.json").read_bytes()
    return (
        gmetri,
        len(json.loads(gmetri)["data"]["rows"]),
        synthesis,
        json.loads(synthesis)[0]["uuid"],
    )


def run_throughput(
    args: argparse.Namespace, concurrency: int, mode: str, profile_to: Path | None
) -> dict[str, Any]:
    gmetri, rows, _, _ = _bodies(args)
    batches = -(-args.events // rows)
    expected = batches * rows
    with tempfile.TemporaryDirectory(prefix="relayhook-bench-", dir=args.dir) as folder:
        receiver = Receiver(lifetime=args.timeout + 600)
        server = None
        profiler = None
        try:
            server = Server(
                Path(folder),
                synchronous=args.synchronous,
                receiver_port=receiver.port,
                concurrency=concurrency,
                key_header=False,
                prelude=args.server_prelude,
                store_url=args.store_url,
                workers=args.workers,
            )
            server.wait_healthy()
            load = Load(
                f"{server.base_url}/in/{GMETRI_TOKEN}",
                gmetri,
                {
                    "Content-Type": "application/json",
                    "Authorization": f"Basic {server.gmetri_secret}",
                },
                count=batches,
                timeout=args.timeout,
                clients=args.load_clients,
            )
            loaded: dict[str, Any] | None = None
            if mode == "preload":
                server.set_hook(False)
                loaded = LoadProcess(load).result()
                if loaded["events"] != expected:
                    raise RuntimeError(
                        f"preload: {loaded['events']} of {expected} events"
                        f" acknowledged ({loaded['errors']})"
                    )
            receiver.reset()
            cpu, receiver_cpu, threads = (
                server.cpu_seconds(),
                receiver.cpu_seconds(),
                server.thread_cpu(),
            )
            start = time.monotonic()
            if profile_to is not None:
                profiler = Profiler(server.process.pid, profile_to)
            if mode == "preload":
                server.set_hook(True)
                loader = None
            else:
                loader = LoadProcess(load)
            stats = _wait_for_arrivals(receiver, expected, start + args.timeout)
            wall = time.monotonic() - start
            server_cpu = server.cpu_seconds() - cpu
            receiver_cpu = receiver.cpu_seconds() - receiver_cpu
            main_cpu, other_cpu = (b - a for a, b in zip(threads, server.thread_cpu(), strict=True))
            profiled = profiler.stop() if profiler is not None else None
            if loader is not None:
                loaded = loader.result()
            arrivals = receiver.arrivals()
            rss = server.peak_rss_mb()
        finally:
            if profiler is not None:
                profiler.stop()
            if server is not None:
                server.stop()
            receiver.stop()
        counts = server.delivery_counts()
    times = arrivals["times"]
    if stats["count"] < expected:
        print(
            f"WARNING throughput {mode} x{concurrency}: {stats['count']} of {expected}"
            " deliveries arrived before the deadline",
            file=sys.stderr,
        )
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    cut = len(times) // 20
    row = {
        "scenario": "throughput",
        "load": mode,
        "concurrency": concurrency,
        "store": "postgresql" if is_postgres(args.store_url) else "sqlite",
        "workers": args.workers or "all",
        "synchronous": args.synchronous,
        "events": expected,
        "delivered": stats["count"],
        "unique": arrivals["unique_ids"],
        "seconds": round(span, 2),
        "deliveries_per_s": round(_rate(times)),
        "middle_90_per_s": round(_rate(times[cut : len(times) - cut])) if cut else None,
        "start_delay_s": round(times[0] - start, 2) if times else None,
        "server_cpu_pct": round(100 * server_cpu / wall),
        "server_cpu_us_per_delivery": round(1e6 * server_cpu / max(1, stats["count"])),
        "loop_thread_cpu_pct": round(100 * main_cpu / wall),
        "other_threads_cpu_pct": round(100 * other_cpu / wall),
        "receiver_cpu_pct": round(100 * receiver_cpu / wall),
        "server_peak_rss_mb": round(rss, 1),
        "connections": stats["connections"],
        "statuses": counts,
        "ingest_seconds": round(loaded["elapsed"], 2) if loaded else None,
        "per_second": _timeline(times),
        "profiled": profiled is not None,
        "server_prelude": str(args.server_prelude) if args.server_prelude else None,
    }
    if profiled is not None and profile_to is not None and profile_to.exists():
        row["profile"] = summarize_profile(profile_to, profiled)
        row["profile_file"] = str(profile_to)
    return row


def run_latency(args: argparse.Namespace, rate: float, concurrency: int) -> dict[str, Any]:
    _, _, synthesis, template_uuid = _bodies(args)
    with tempfile.TemporaryDirectory(prefix="relayhook-bench-", dir=args.dir) as folder:
        receiver = Receiver(lifetime=args.timeout + args.duration + 600)
        server = None
        try:
            server = Server(
                Path(folder),
                synchronous=args.synchronous,
                receiver_port=receiver.port,
                concurrency=concurrency,
                key_header=True,
                prelude=args.server_prelude,
                store_url=args.store_url,
                workers=args.workers,
            )
            server.wait_healthy()
            load = Load(
                f"{server.base_url}/in/{SYNTHESIS_TOKEN}",
                synthesis,
                {"Content-Type": "application/json"},
                count=args.max_requests,
                timeout=args.timeout,
                rate=rate,
                duration=args.duration,
                unique_uuid=template_uuid,
            )
            # Warm up: a few requests, delivered before the clock starts.
            warm = LoadProcess(
                Load(
                    load.url,
                    load.body,
                    load.headers,
                    count=20,
                    timeout=args.timeout,
                    unique_uuid=template_uuid,
                )
            ).result()
            _wait_for_arrivals(receiver, warm["events"], time.monotonic() + 30)
            receiver.reset()
            cpu, start = server.cpu_seconds(), time.monotonic()
            loaded = LoadProcess(load).result()
            sent = len(loaded["sent"])
            _wait_for_arrivals(receiver, loaded["events"], time.monotonic() + 30)
            wall = time.monotonic() - start
            server_cpu = server.cpu_seconds() - cpu
            arrivals = receiver.arrivals()
            rss = server.peak_rss_mb()
        finally:
            if server is not None:
                server.stop()
            receiver.stop()
        counts = server.delivery_counts()
    arrived = arrivals["keys"]
    latencies = sorted(arrived[key] - at for key, at in loaded["sent"].items() if key in arrived)
    acks = sorted(loaded["acks"])
    ms = {f"p{p}_ms": round(_percentile(latencies, p) * 1000, 1) for p in (50, 90, 99)}
    return {
        "scenario": "latency",
        "load": f"{rate:g} events/s",
        "concurrency": concurrency,
        "synchronous": args.synchronous,
        "seconds": round(loaded["elapsed"], 1),
        "sent": sent,
        "acked": loaded["events"],
        "delivered": len(latencies),
        "missing": sent - len(latencies),
        **ms,
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "ack_p50_ms": round(_percentile(acks, 50) * 1000, 1),
        "ack_p99_ms": round(_percentile(acks, 99) * 1000, 1),
        "errors": loaded["errors"],
        "max_send_lag_ms": round(loaded["max_send_lag"] * 1000, 1),
        "server_cpu_pct": round(100 * server_cpu / wall),
        "server_peak_rss_mb": round(rss, 1),
        "statuses": counts,
    }


# --- transport: every client in this one process -------------------------------------------


def _sample_delivery(args: argparse.Namespace) -> tuple[bytes, dict[str, str]]:
    """A body and headers like the throughput hook's: one GMetri event as CloudEvent JSON."""
    gmetri = json.loads((args.bodies / "gmetri500.json").read_bytes())
    row = gmetri["data"]["rows"][0]
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "gmetri/o/d",
        "type": "gmetri.variables.changed",
        "subject": row["identifier"],
        "time": "2024-05-01T12:00:00.000Z",
        "datacontenttype": "application/json",
        "data": row["variables"],
        "relay": "gmetri",
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "user-agent": "Relayhook/bench",
        "content-type": "application/json",
        "webhook-id": str(uuid.uuid4()),
    }
    return body, headers


Sender = Callable[[], Awaitable[None]]
Closer = Callable[[], Awaitable[None]]


async def _measure(
    send: Sender, in_flight: int, seconds: float, cap: int, warmup: int
) -> dict[str, Any]:
    """`in_flight` tasks, each sending its next request when the last is answered, for
    `seconds` or `cap` requests; the rate and this process's CPU per request."""
    for _ in range(warmup):
        await send()
    done, errors = [0], collections.Counter[str]()
    budget = [cap]
    start, cpu = time.monotonic(), time.process_time()
    end = start + seconds

    async def one() -> None:
        while budget[0] > 0 and time.monotonic() < end:
            budget[0] -= 1
            try:
                await send()
                done[0] += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors[type(exc).__name__] += 1

    await asyncio.gather(*(one() for _ in range(in_flight)))
    elapsed = time.monotonic() - start
    used = time.process_time() - cpu
    return {
        "requests": done[0],
        "seconds": round(elapsed, 2),
        "requests_per_s": round(done[0] / elapsed),
        "client_cpu_pct": round(100 * used / elapsed),
        "cpu_us_per_request": round(1e6 * used / max(1, done[0])),
        "errors": dict(errors),
    }


def _httpx_sender(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> Sender:
    async def send() -> None:
        response = await client.post(url, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"http {response.status_code}")

    return send


def _dispatcher_sender(transport: Any, url: str, body: bytes, headers: dict[str, str]) -> Sender:
    """The exact call of Dispatcher._send: the transport's Sender.send."""
    from relayhook.delivery.dispatcher import MAX_RESPONSE_BODY

    pairs = tuple(headers.items())

    async def send() -> None:
        reply = await transport.send(
            "POST", url, pairs, body, timeout=10.0, limit=MAX_RESPONSE_BODY
        )
        if reply.status != 200:
            raise RuntimeError(f"http {reply.status}")

    return send


@dataclass
class ClientVariant:
    name: str
    in_flight: tuple[int, ...]
    make: Callable[[int, str, bytes, dict[str, str]], Awaitable[tuple[Sender, Closer]]]


async def _make_httpx_default(
    k: int, url: str, body: bytes, headers: dict[str, str]
) -> tuple[Sender, Any]:
    limits = httpx.Limits(max_connections=k, max_keepalive_connections=k)
    client = httpx.AsyncClient(limits=limits, timeout=10.0, trust_env=False)
    return _httpx_sender(client, url, body, headers), client.aclose


def _policy() -> Any:
    from relayhook.core.ssrf import DestinationPolicy

    return DestinationPolicy.from_config(allow_cidrs=["127.0.0.1/32"])


async def _make_guarded(
    k: int, url: str, body: bytes, headers: dict[str, str]
) -> tuple[Sender, Any]:
    from relayhook.delivery.http import make_http_client

    client = make_http_client(_policy(), max_connections=k)
    return _httpx_sender(client, url, body, headers), client.aclose


async def _make_guarded_dispatcher_call(
    k: int, url: str, body: bytes, headers: dict[str, str]
) -> tuple[Sender, Any]:
    from relayhook.delivery.http import make_http_transport

    transport = make_http_transport(_policy(), max_connections=k)
    return _dispatcher_sender(transport, url, body, headers), transport.aclose


async def _make_aiohttp(
    k: int, url: str, body: bytes, headers: dict[str, str]
) -> tuple[Sender, Any]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=k),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=10),
    )

    async def send() -> None:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"http {response.status}")

    return send, session.close


CLIENTS = [
    ClientVariant("httpx, default transport (httpcore)", (4, 16, 64), _make_httpx_default),
    ClientVariant(
        "httpx over our guarded aiohttp transport (make_http_client)", (4, 16, 64), _make_guarded
    ),
    ClientVariant(
        "the same transport as the dispatcher calls it (GuardedTransport.send)",
        (4, 16, 64),
        _make_guarded_dispatcher_call,
    ),
    ClientVariant("aiohttp", (4, 16, 64), _make_aiohttp),
]


async def _transport_runs(args: argparse.Namespace, receiver: Receiver) -> list[dict[str, Any]]:
    body, headers = _sample_delivery(args)
    url = f"{receiver.url}/hook"
    rows = []
    for variant in CLIENTS:
        for k in variant.in_flight:
            receiver.reset()
            before, busy = load_average(), machine_busy(1.0)
            send, close = await variant.make(k, url, body, headers)
            try:
                figures = await _measure(
                    send, k, args.transport_seconds, args.max_requests, warmup=4 * k
                )
            finally:
                await close()
            received = receiver.stats()["count"]
            rows.append(
                {
                    "scenario": "transport",
                    "client": variant.name,
                    "in_flight": k,
                    "loop": args.loop,
                    **figures,
                    "received": received,
                    "load_avg": before,
                    "busy_before_pct": busy,
                }
            )
            print(
                f"  {variant.name} x{k}: {figures['requests_per_s']}/s", file=sys.stderr, flush=True
            )
    return rows


def run_transport(args: argparse.Namespace) -> list[dict[str, Any]]:
    receiver = Receiver(lifetime=args.transport_seconds * 40 + 600)
    try:
        if args.loop == "uvloop":
            import uvloop

            return uvloop.run(_transport_runs(args, receiver))
        return asyncio.run(_transport_runs(args, receiver))
    finally:
        receiver.stop()


# --- the machine and the report ------------------------------------------------------------


def _filesystem(path: Path) -> str:
    best = ("?", "")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount, kind, *_ = line.split()
        if str(path.resolve()).startswith(mount) and len(mount) >= len(best[1]):
            best = (kind, mount)
    return best[0]


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
    }


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def machine_busy(seconds: float = 2.0) -> float:
    """Percent of all CPUs busy over `seconds`, while this benchmark runs nothing: the others'."""
    busy, total = _cpu_times()
    time.sleep(seconds)
    busy2, total2 = _cpu_times()
    return round(100 * (busy2 - busy) / max(1, total2 - total), 1)


def wait_quiet(below: float | None, limit: float = 180.0) -> tuple[str, float]:
    """Wait (at most `limit` s) until other processes use less than `below`% of the machine;
    the load average and that share, just before the run."""
    busy = machine_busy()
    deadline = time.monotonic() + limit
    while below is not None and busy >= below and time.monotonic() < deadline:
        busy = machine_busy(5.0)
    return load_average(), busy


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "|".join(" --- " for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(str(row.get(key, "")) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


THROUGHPUT_COLUMNS = [
    ("store", "store"),
    ("workers", "workers"),
    ("load", "load"),
    ("concurrency", "concurrency"),
    ("synchronous", "sync"),
    ("delivered", "delivered"),
    ("seconds", "first->last s"),
    ("deliveries_per_s", "deliveries/s"),
    ("middle_90_per_s", "middle 90% /s"),
    ("server_cpu_pct", "server CPU %"),
    ("loop_thread_cpu_pct", "loop thread CPU %"),
    ("other_threads_cpu_pct", "writer + readers CPU %"),
    ("receiver_cpu_pct", "receiver CPU %"),
    ("server_cpu_us_per_delivery", "server CPU us/delivery"),
    ("server_peak_rss_mb", "server peak RSS MB"),
    ("load_avg", "load avg before"),
    ("busy_before_pct", "others' CPU % before"),
]
LATENCY_COLUMNS = [
    ("load", "load"),
    ("concurrency", "concurrency"),
    ("synchronous", "sync"),
    ("sent", "sent"),
    ("delivered", "delivered"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("ack_p50_ms", "ack p50 ms"),
    ("ack_p99_ms", "ack p99 ms"),
    ("server_cpu_pct", "server CPU %"),
    ("server_peak_rss_mb", "server peak RSS MB"),
    ("load_avg", "load avg before"),
    ("busy_before_pct", "others' CPU % before"),
]
TRANSPORT_COLUMNS = [
    ("client", "client"),
    ("in_flight", "in flight"),
    ("requests_per_s", "requests/s"),
    ("cpu_us_per_request", "client CPU us/request"),
    ("client_cpu_pct", "client CPU %"),
    ("requests", "requests"),
    ("load_avg", "load avg before"),
    ("busy_before_pct", "others' CPU % before"),
]


def _profile_text(row: dict[str, Any]) -> str:
    profile = row["profile"]

    def line(shares: dict[str, float]) -> str:
        return ", ".join(f"{name} {pct:g}%" for name, pct in shares.items())

    return "\n".join(
        [
            f"py-spy, {row['load']} x{row['concurrency']} ({row['deliveries_per_s']}/s while"
            f" sampled, {profile['seconds']} s, {row['profile_file']}):",
            f"- threads on CPU, % of wall: {line(profile['busy_pct_of_wall'])}",
            f"- loop thread by layer, % of its samples: {line(profile['loop_pct_by_layer'])}",
            f"- writer thread by job, % of wall: {line(profile['writer_pct_of_wall_by_job'])}",
            f"- loop, inclusive: {line(profile['loop_top_inclusive_pct'])}",
            f"- loop, self: {line(profile['loop_top_self_pct'])}",
        ]
    )


def report(about: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    parts = [
        f"{about['date']}; {about['cpus']} x {about['cpu']}; Python {about['python']};"
        f" Linux {about['kernel']}; database on {about['filesystem']}"
    ]
    for scenario, columns in (
        ("throughput", THROUGHPUT_COLUMNS),
        ("latency", LATENCY_COLUMNS),
        ("transport", TRANSPORT_COLUMNS),
    ):
        chosen = [row for row in rows if row["scenario"] == scenario]
        if chosen:
            parts.append(f"### {scenario}\n\n" + _table(chosen, columns))
        for row in chosen:
            if row.get("profile"):
                parts.append(_profile_text(row))
            odd = {
                k: v
                for k, v in row.get("statuses", {}).items()
                if k not in ("succeeded", "attempts")
            }
            if odd or row.get("missing") or row.get("errors"):
                parts.append(
                    f"note: {scenario} {row.get('load')} x{row.get('concurrency')}:"
                    f" statuses {row.get('statuses')}, errors {row.get('errors')}"
                )
    return "\n\n".join(parts)


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
        "--store-url",
        default=DEFAULT_URL,
        help="[storage] url; a postgresql:// URL names a server on which each"
        " run gets a new database, dropped after it (default: SQLite)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="0: one `--role all` process (default); N: one `--role web`"
        " process and N `--role worker` processes (needs PostgreSQL)",
    )
    parser.add_argument(
        "--concurrency",
        action="append",
        type=int,
        help="the hook's concurrency and [delivery] max_connections (repeatable; default: 64)",
    )
    parser.add_argument(
        "--load",
        action="append",
        choices=LOADS,
        help="throughput: preload (default) or live (repeatable)",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=20_000,
        help="throughput: events, in 500-row GMetri batches (default: 20000)",
    )
    parser.add_argument(
        "--load-clients",
        type=int,
        default=2,
        help="throughput: closed-loop clients posting the batches (default: 2)",
    )
    parser.add_argument(
        "--rate",
        action="append",
        type=float,
        help="latency: SynthesisVR events per second (repeatable; default: 200)",
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="latency: seconds of load (default: 20)"
    )
    parser.add_argument(
        "--transport-seconds",
        type=float,
        default=5.0,
        help="transport: measured seconds per client and level (default: 5)",
    )
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="transport: the event loop of this process (default: uvloop, as"
        " `relayhook serve` runs)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="cap on the requests of one run (default: 200000)",
    )
    parser.add_argument(
        "--synchronous",
        default="FULL",
        choices=["NORMAL", "FULL", "EXTRA"],
        help="[storage] synchronous of the server (default: FULL)",
    )
    parser.add_argument(
        "--server-prelude",
        type=Path,
        default=None,
        metavar="FILE",
        help="a diagnostic: run this Python file in the server process before"
        " relayhook starts (e.g. a monkeypatch that estimates what a change"
        " would gain); never for the reference figures",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=None,
        metavar="PCT",
        help="before each run, wait (up to 180 s) until other processes use"
        " less than PCT%% of all CPUs (default: do not wait)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each setting (default: 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds a run may take before it is given up (default: 180)",
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
        help="where the temporary database goes (default: the system temp dir)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="throughput: also sample the server with py-spy (raw stacks into"
        " DIR, a summary in the results); the first run of each setting",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, not Markdown")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    concurrencies = args.concurrency or [64]
    if min(concurrencies) < 1 or max(concurrencies) > 256:
        raise SystemExit("--concurrency is 1 to 256 (a hook's limit)")
    if (
        min(args.events, args.load_clients, args.repeat, args.max_requests) < 1
        or min(args.duration, args.transport_seconds, args.timeout) <= 0
    ):
        raise SystemExit("counts must be at least 1 and durations positive")
    about = machine(args)
    rows: list[dict[str, Any]] = []
    for scenario in args.scenario or SCENARIOS:
        for repeat in range(args.repeat):
            print(
                f"running {scenario} ({repeat + 1}/{args.repeat}), load average"
                f" {load_average()}...",
                file=sys.stderr,
                flush=True,
            )
            if scenario == "throughput":
                for mode in args.load or ["preload"]:
                    for k in concurrencies:
                        spy, (before, busy) = None, wait_quiet(args.quiet_below)
                        if args.py_spy is not None and repeat == 0:
                            spy = args.py_spy / f"throughput-{mode}-c{k}.txt"
                        row = run_throughput(args, k, mode, spy)
                        row["load_avg"], row["busy_before_pct"] = before, busy
                        print(
                            f"  {mode} x{k}: {row['deliveries_per_s']}/s",
                            file=sys.stderr,
                            flush=True,
                        )
                        rows.append(row)
            elif scenario == "latency":
                for rate in args.rate or [200.0]:
                    before, busy = wait_quiet(args.quiet_below)
                    row = run_latency(args, rate, concurrencies[0])
                    row["load_avg"], row["busy_before_pct"] = before, busy
                    print(
                        f"  {rate:g}/s: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms",
                        file=sys.stderr,
                        flush=True,
                    )
                    rows.append(row)
            else:
                wait_quiet(args.quiet_below)
                rows += run_transport(args)
    if args.json:
        print(json.dumps({"machine": about, "results": rows}, indent=2))
    else:
        print(report(about, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
