"""Key rotation while serving (issue 22, item 3): how long `relayhook keys rotate` takes for N
stored secrets, and what the requests a running server answers meanwhile see.

1. **Fill.** N relays created at run time (`gamify`, each with its secret), sealed with the key
   file's key, written through the store (no server: creating them over HTTP re-reads every
   relay per creation).
2. **Serve.** `relayhook serve` on that database, and a thread posting small bodies to the
   config's `generic` relay, one at a time, for the whole run.
3. **Rotate.** `relayhook keys rotate --grace 0` (every step at once: the grace only waits for
   other processes): its wall time, secrets sealed again per second, and the requests answered
   during it (count, p50, max).

Everything on 127.0.0.1; every loop bounded; the server stopped in `finally`.

    python bench/rotate.py                      # 1,000 and 10,000 secrets
    python bench/rotate.py --secrets 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from relayhook.sealing import Sealer, read_or_create_key_file
from relayhook.store import SQLiteStore, StoredRelay

HOST = "127.0.0.1"
TOKEN = "tok-bench-rotate-0123456789"
PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def fill(database: Path, count: int) -> None:
    keys, _ = read_or_create_key_file(database.with_name(database.name + ".key"))
    sealer = Sealer.from_keys(keys)
    store = SQLiteStore(database)
    await store.open()
    try:
        now = time.time()
        for n in range(count):
            sealed = sealer.seal(
                {
                    "token": f"tok-bench-{n:08d}-0123456789",
                    "secret": f"secret-{n:08d}-0123456789abcdef",
                }
            )
            await store.create_relay(StoredRelay(f"r{n}", "gamify", "api", sealed, now, now))
    finally:
        await store.close()


def env() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAYHOOK_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), environ.get("PYTHONPATH")]))
    return environ


def run(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        port = free_port()
        config = folder / "relayhook.toml"
        config.write_text(
            f'[server]\nhost = "{HOST}"\nport = {port}\n\n[storage]\n'
            f'url = "sqlite:///relayhook.db"\n\n[[relays]]\nname = "generic"\n'
            f'connector = "generic"\ntoken = "{TOKEN}"\n',
            encoding="utf-8",
        )
        started = time.monotonic()
        asyncio.run(fill(folder / "relayhook.db", count))
        filled = time.monotonic() - started
        with (folder / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relayhook.cli",
                    "--config",
                    str(config),
                    "serve",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                cwd=folder,
                env=env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        stop = threading.Event()
        answered: list[tuple[float, float]] = []  # (when sent, seconds to the answer)
        try:
            url = f"http://{HOST}:{port}"
            with httpx.Client(trust_env=False, timeout=10) as client:
                for _ in range(600):  # 30 s at most
                    try:
                        if client.get(url + "/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.05)

            def load() -> None:
                with httpx.Client(trust_env=False, timeout=10) as client:
                    for n in range(1_000_000):  # bounded; stopped long before
                        if stop.is_set():
                            return
                        sent = time.monotonic()
                        response = client.post(f"{url}/in/{TOKEN}", json={"n": n})
                        if response.status_code == 200:
                            answered.append((sent, time.monotonic() - sent))

            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            time.sleep(1.0)  # the load running before the rotation starts
            began = time.monotonic()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "relayhook.cli",
                    "--config",
                    str(config),
                    "keys",
                    "rotate",
                    "--grace",
                    "0",
                ],
                cwd=folder,
                env=env(),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            took = time.monotonic() - began
            stop.set()
            thread.join(timeout=10)
        finally:
            server.terminate()
            server.wait(timeout=30)
        if done.returncode != 0:
            raise SystemExit(f"keys rotate failed:\n{done.stdout}\n{done.stderr}")
        during = [seconds for sent, seconds in answered if began <= sent <= began + took]
        print(
            f"| {count:,} | {filled:.1f} | {took:.2f} | {count / took:,.0f} |"
            f" {len(during)} | {statistics.median(during) * 1000:.1f} |"
            f" {max(during) * 1000:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--secrets", type=int, action="append")
    args = parser.parse_args()
    print("| secrets | fill s | rotate s | secrets/s | requests during | p50 ms | max ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for count in args.secrets or [1_000, 10_000]:
        run(count)


if __name__ == "__main__":
    main()
