"""The slow-client benchmark: 200 connections trickling their headers a byte a second while a
SynthesisVR client posts, against `relayhook serve` in a subprocess on 127.0.0.1.

    python bench/slow_clients.py                       # 200 slow connections, default deadline
    python bench/slow_clients.py --slow 500 --header-timeout 5 --json

Two phases on one server, in one run: the SynthesisVR client alone (the baseline), then the same
client while the slow connections trickle. SynthesisVR opens a new connection per webhook, so the
client does too. Reported: the client's latency percentiles in each phase, and for the slow
connections how long each lived before the server closed it. The slow connections run in their
own process, so their work is not charged to the client. Asserts nothing; traffic stays on
127.0.0.1; the server is always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
TOKEN = "bench-slow-synthesis-0001"
CONFIG = """\
[server]
header_timeout = {header_timeout}
max_connections = {max_connections}

[[relays]]
name = "synthesisvr"
connector = "synthesisvr"
token = "{token}"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "relayhook.cli",
        "--config",
        "relayhook.toml",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("relayhook serve did not start: " + (workdir / "serve.log").read_text())


def post_synthesis(port: int) -> float:
    """One SynthesisVR webhook on a new connection: seconds to its 200."""
    body = json.dumps(
        [
            {
                "uuid": str(uuid.uuid4()),
                "action": "create",
                "location": "Bench",
                "stations": 1,
                "customerid": 7685,
            }
        ]
    )
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", f"/in/{TOKEN}", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"answered {response.status}")
    finally:
        conn.close()
    return time.perf_counter() - started


def run_client(port: int, seconds: float, pause: float) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop and len(latencies) < 1_000_000:
        latencies.append(post_synthesis(port))
        time.sleep(pause)
    return latencies


async def trickle_one(port: int, seconds: float) -> float | None:
    """Send a request's headers a byte a second; the seconds until the server closed the
    connection (None if it was still open after `seconds`)."""
    head = f"POST /in/{TOKEN} HTTP/1.1\r\nHost: relay\r\nContent-Length: 2\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    try:
        for byte in head:
            if time.monotonic() - started > seconds:
                return None
            try:
                writer.write(bytes([byte]))
                await writer.drain()
                if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
            except ConnectionError:
                return time.monotonic() - started
        return None
    finally:
        writer.close()


def run_slow(port: int, count: int, seconds: float, out: Any) -> None:
    async def all_of_them() -> list[float | None]:
        return await asyncio.gather(*(trickle_one(port, seconds) for _ in range(count)))

    out.put(asyncio.run(all_of_them()))


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest rank
        return ordered[max(0, min(len(ordered) - 1, int(round(p * len(ordered))) - 1))]

    return {
        "n": len(ordered),
        "p50_ms": rank(0.50) * 1000,
        "p99_ms": rank(0.99) * 1000,
        "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", type=int, default=200, help="slow connections")
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--max-connections", type=int, default=500)
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of baseline")
    parser.add_argument("--pause", type=float, default=0.01, help="client pause between posts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="relayhook-bench-slow-") as tmp:
        workdir = Path(tmp)
        (workdir / "relayhook.toml").write_text(
            CONFIG.format(
                header_timeout=args.header_timeout,
                max_connections=args.max_connections,
                token=TOKEN,
            )
        )
        port = free_port()
        server = start_server(workdir, port)
        try:
            run_client(port, 2.0, args.pause)  # warm-up, not counted
            baseline = run_client(port, args.baseline, args.pause)
            results: Any = multiprocessing.get_context("spawn").Queue()
            window = args.header_timeout + 5.0
            slow = multiprocessing.get_context("spawn").Process(
                target=run_slow, args=(port, args.slow, window, results)
            )
            slow.start()
            time.sleep(0.5)  # let the slow connections open before measuring beside them
            loaded = run_client(port, args.header_timeout, args.pause)
            closed = results.get(timeout=window + 30)
            slow.join(timeout=30)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()

    lived = [t for t in closed if t is not None]
    report = {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
        },
        "header_timeout_s": args.header_timeout,
        "synthesis_alone": percentiles(baseline),
        "synthesis_beside_slow": percentiles(loaded),
        "slow_connections": {
            "opened": len(closed),
            "closed_by_server": len(lived),
            "still_open": len(closed) - len(lived),
            "lived_min_s": min(lived, default=float("nan")),
            "lived_median_s": statistics.median(lived) if lived else float("nan"),
            "lived_max_s": max(lived, default=float("nan")),
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']}")
    for name in ("synthesis_alone", "synthesis_beside_slow"):
        p = report[name]
        print(
            f"{name:24} n={p['n']:5}  p50 {p['p50_ms']:6.1f} ms  p99 {p['p99_ms']:6.1f} ms"
            f"  max {p['max_ms']:6.1f} ms"
        )
    s = report["slow_connections"]
    print(
        f"slow connections: {s['opened']} opened, {s['closed_by_server']} closed by the server"
        f" after {s['lived_min_s']:.2f} / {s['lived_median_s']:.2f} / {s['lived_max_s']:.2f} s"
        f" (min / median / max; deadline {args.header_timeout} s), {s['still_open']} open"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
