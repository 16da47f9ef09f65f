"""Ingest latency during a password-guessing attack on the console (issue 17, item 5).

    python bench/signin_attack.py                 # every scenario, 20 s each
    python bench/signin_attack.py --duration 10 --rate 50 --guessers 8 --json

One `relayhook serve` per scenario (SQLite, FULL, a fresh folder), on a free 127.0.0.1 port.
Ingest: one-item SynthesisVR arrays posted open loop at `--rate`/s from a worker process,
latency from each request's due time to its 200. Guessers: `--guessers` concurrent clients in
another worker process, each posting wrong passwords to /signin as fast as it is answered, each
guess with a new X-Forwarded-For address. Scenarios:

    baseline         ingest alone
    rotating-xff     guessers from 127.0.0.1 rotating X-Forwarded-For, no proxy trusted (the
                     red team's attack: uvicorn used to believe it)
    trusted-proxy    the same through a trusted proxy ([server] forwarded_allow_ips =
                     ["127.0.0.1"]): every guess from a new address, as a botnet behind it

Reported: ingest p50/p99/max (ms), guesses answered per second, of them 401 (an argon2
verification ran) and 429 (throttled: none ran). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
PROJECT = Path(__file__).resolve().parents[1]
TOKEN = "bench-synthesis-relay-0001"
BODY = (
    b'[{"uuid":"41509791-3de8-5bb9-b4fc-a9753da95aad","action":"create",'
    b'"location":"Kamen Test","stations":1,"customerid":7685}]'
)
SCENARIOS = ("baseline", "rotating-xff", "trusted-proxy")
CONFIG = """\
[server]
host = "{host}"
port = {port}
forwarded_allow_ips = {proxies}

[storage]
url = "sqlite:///relayhook.db"

[[relays]]
name = "synthesis"
connector = "synthesisvr"
token = "{token}"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(folder: Path, proxies: list[str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    config = folder / "relayhook.toml"
    config.write_text(
        CONFIG.format(host=HOST, port=port, proxies=json.dumps(proxies), token=TOKEN),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYHOOK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relayhook.cli",
                "serve",
                "--config",
                str(config),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace")[-2000:])
        try:
            if httpx.get(base + "/healthz", timeout=1, trust_env=False).status_code == 200:
                return process, base, log
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("no /healthz within 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


async def ingest(base: str, rate: float, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    url = f"{base}/in/{TOKEN}"
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=10, trust_env=False) as client:
        for _ in range(5):  # warm up
            await client.post(url, content=BODY)

        async def one(due: float) -> None:
            nonlocal errors
            try:
                answer = await client.post(
                    url, content=BODY, headers={"Content-Type": "application/json"}
                )
                if answer.status_code != 200:
                    errors += 1
                    return
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.monotonic() - due)

        start, tasks = time.monotonic(), []
        for i in range(int(rate * duration)):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.wait(tasks, timeout=30)
    latencies.sort()

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(1000 * latencies[-1], 1),
    }


async def guess(base: str, guessers: int, duration: float) -> dict[str, Any]:
    codes: dict[int, int] = {}

    async def one_guesser(index: int) -> None:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
            page = await client.get(base + "/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf, page.text[:500]
            end, n = time.monotonic() + duration, 0
            while time.monotonic() < end and n < 100_000:
                n += 1
                forwarded = f"10.{index}.{n // 250 % 250}.{n % 250 + 1}"
                answer = await client.post(
                    base + "/signin",
                    data={"csrf": csrf.group(1), "password": f"guess-{n}"},
                    headers={"X-Forwarded-For": forwarded},
                )
                codes[answer.status_code] = codes.get(answer.status_code, 0) + 1

    await asyncio.gather(*(one_guesser(i) for i in range(guessers)))
    total = sum(codes.values())
    return {
        "guesses_per_s": round(total / duration, 1),
        "codes": codes,
        "argon2_per_s": round(codes.get(401, 0) / duration, 2),
    }


def _worker(kind: str, args: tuple[Any, ...], results: Any) -> None:
    fn = ingest if kind == "ingest" else guess
    results.put((kind, asyncio.run(fn(*args))))


def run_scenario(name: str, rate: float, guessers: int, duration: float) -> dict[str, Any]:
    load = round(os.getloadavg()[0], 1)  # the machine is shared: say how busy it was
    with tempfile.TemporaryDirectory(prefix="relayhook-signin-") as tmp:
        proxies = ["127.0.0.1"] if name == "trusted-proxy" else []
        process, base, _ = start_server(Path(tmp), proxies)
        try:
            results: Any = multiprocessing.Queue()
            workers = [
                multiprocessing.Process(
                    target=_worker, args=("ingest", (base, rate, duration), results)
                )
            ]
            if name != "baseline":
                workers.append(
                    multiprocessing.Process(
                        target=_worker, args=("guess", (base, guessers, duration), results)
                    )
                )
            for worker in workers:
                worker.start()
            found = dict(results.get(timeout=duration + 120) for _ in workers)
            for worker in workers:
                worker.join(30)
        finally:
            stop(process)
    return {
        "scenario": name,
        "load": load,
        "rate": rate,
        "guessers": guessers if name != "baseline" else 0,
        **found.get("ingest", {}),
        **{f"guess_{k}": v for k, v in found.get("guess", {}).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=50.0, help="ingest requests per second")
    parser.add_argument("--guessers", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        run_scenario(name, args.rate, args.guessers, args.duration)
        for name in args.scenario or SCENARIOS
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        "| scenario | load avg | ingest p50 ms | p99 ms | max ms | guesses/s | argon2 runs/s |"
        " answers |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['scenario']} | {row['load']} | {row['p50_ms']} | {row['p99_ms']} | "
            f"{row['max_ms']} | "
            f"{row.get('guess_guesses_per_s', '-')} | {row.get('guess_argon2_per_s', '-')} | "
            f"{row.get('guess_codes', '-')} |"
        )


if __name__ == "__main__":
    main()
