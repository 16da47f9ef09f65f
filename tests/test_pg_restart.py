"""The database restarting mid-load: a private PostgreSQL cluster (initdb in a temporary folder,
its own port), so that stopping it touches nobody else's database.

While it is down, the web process spools what it is sent (fsync'd, answered 200 with
`"spooled": true`), never 200 for a request kept nowhere; once it is back, the spool drains into
the database by itself, the web process stores directly again, and the worker delivers
everything (reconnected, its leases reclaiming what was in flight).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from postgres import in_ci, query
from receiver import Receiver
from servers import (
    RelayConfig,
    RelayhookProcess,
    free_port,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

pytestmark = pytest.mark.slow

BIN = Path("/usr/lib/postgresql/15/bin")
RELAY = RelayConfig("gen-restart", "generic", "tok-gen-restart-0123456789")


class PrivateCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="relayhook-pg-"))
        self.port = free_port()
        self.data = self.dir / "data"

    def run(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60
        )

    def init(self) -> None:
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")
        self.run(
            str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self.run(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def crash(self) -> None:
        """Stop as a crash would: no checkpoint, connections cut."""
        self.run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    if os.geteuid() != 0 or not (BIN / "initdb").exists() or not shutil.which("runuser"):
        message = "a private PostgreSQL cluster needs root, runuser and PostgreSQL 15's initdb"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def test_a_database_restart_mid_load_spools_then_recovers(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    with Receiver() as rx:
        hooks = [
            {
                "name": "out",
                "events": ["*"],
                "url": rx.url + "/out/",
                "timeout": 1,
                "retry": {"schedule": [0, 0.5, 0.5, 0.5, 0.5, 1, 1, 1], "jitter": 0},
            }
        ]
        config = (
            render_config(relays=[RELAY], storage_url=cluster.url)
            + render_tables(
                delivery={"allow_cidrs": ["127.0.0.1/32"], "lease_seconds": 2, "poll_interval": 0.2}
            )
            + render_hooks(hooks)
        )
        web = RelayhookProcess(tmp_path / "web", config, extra_args=["--role", "web"])
        worker = RelayhookProcess(tmp_path / "worker", config, extra_args=["--role", "worker"])
        acked: list[str] = []
        spooled: list[str] = []
        answers: list[int] = []
        stop = threading.Event()

        def load() -> None:
            with http_client(timeout=10.0) as client:
                for n in range(100_000):  # bounded
                    if stop.is_set():
                        return
                    try:
                        response = client.post(
                            f"{web.url}/in/{RELAY.token}?type=t.n", json={"n": n}
                        )
                    except httpx.TransportError:
                        answers.append(0)
                        continue
                    answers.append(response.status_code)
                    if response.status_code == 200:
                        answer = response.json()
                        acked.append(answer["request_id"])
                        if answer.get("spooled"):
                            spooled.append(answer["request_id"])

        try:
            web.start()
            worker.start()
            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            wait_until(lambda: len(acked) >= 50, timeout=30, what="requests before the crash")
            cluster.crash()
            wait_until(lambda: len(spooled) >= 5, timeout=15, what="spooled while it is down")
            time.sleep(1.0)  # not synchronization: the database stays down for a while
            cluster.start()
            down_until = len(answers)
            wait_until(
                lambda: answers[down_until:].count(200) >= 20,
                timeout=30,
                what="200s again once the database is back",
            )
            stop.set()
            thread.join(timeout=15)

            def stored() -> set[str]:
                return {row[0] for row in query(cluster.url, "SELECT id FROM requests")}

            # The spool drains by itself: every request answered 200 ends up in the database.
            wait_until(
                lambda: set(acked) <= stored(),
                timeout=30,
                interval=0.2,
                what="every acknowledged request in the database",
            )
            assert set(answers) <= {200, 503}, set(answers)
            events = query(cluster.url, "SELECT count(*) FROM events")[0][0]
            got = wait_until(
                lambda: _delivered(rx) >= events or None,
                timeout=60,
                interval=0.2,
                what="every stored event delivered",
            )
            assert got
            wait_until(
                lambda: (
                    query(
                        cluster.url, "SELECT count(*) FROM deliveries WHERE status <> 'succeeded'"
                    )
                    == [(0,)]
                ),
                timeout=30,
                interval=0.2,
                what="every delivery succeeded",
            )
        finally:
            stop.set()
            web.close(quiet=True)
            worker.close(quiet=True)


def _delivered(rx: Receiver) -> int:
    return len({json.loads(r.body)["id"] for r in rx.requests("/out/")})
