"""The worker runtime through real sockets: `relayhook serve` subprocesses (faults injected at
store calls by tests/faulty_relayhook.py), a real receiver.

- the dispatcher raising at a store call: the ERROR line with its traceback, the failure
  counted in /metrics, and every delivery arriving within seconds (both engines);
- a claim that never answers, again and again: /readyz says not ready, and why;
- a disk with less room than `[storage] min_free_mb`: /readyz says not ready, and why;
- `--role worker` opens no port at all, yet delivers; with `--metrics-port` it answers
  /healthz and /readyz but no admin API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from receiver import Receiver
from servers import (
    HOST,
    RelayConfig,
    RelayhookProcess,
    StartServer,
    clean_env,
    free_port,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

pytestmark = pytest.mark.slow

ADMIN = "admin-token-runtime-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
GEN = RelayConfig("gen", "generic", "tok-gen-runtime-0123456789")
FAULTY = (sys.executable, str(Path(__file__).with_name("faulty_relayhook.py")))
EVENTS = 20
RESUME_WITHIN = 15.0  # seconds: three restarts back off 0.5 + 1 + 2 s


def config(
    rx: Receiver,
    storage_url: str = "sqlite:///relayhook.db",
    *,
    worker: dict[str, Any] | None = None,
) -> str:
    hooks = [
        {
            "name": "out",
            "events": ["*"],
            "url": rx.url + "/out/",
            "timeout": 2,
            "retry": {"schedule": [0, 0.5, 0.5], "jitter": 0},
        }
    ]
    tables: dict[str, dict[str, Any]] = {
        "delivery": {"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.2, "lease_seconds": 2},
        "metrics": {"public": True},
        "worker": worker or {},
    }
    return (
        render_config(relays=[GEN], admin_token=ADMIN, storage_url=storage_url)
        + render_tables(**tables)
        + render_hooks(hooks)
    )


def post_events(url: str, count: int = EVENTS) -> None:
    with http_client() as client:
        for n in range(count):
            response = client.post(f"{url}/in/{GEN.token}?type=t.n", json={"n": n})
            assert response.status_code == 200, response.text


def arrived(rx: Receiver) -> set[int]:
    import json

    return {json.loads(r.body)["data"]["n"] for r in rx.requests("/out/") if r.status == 200}


def failures(url: str) -> float:
    with http_client() as client:
        text = client.get(url + "/metrics").text
    for line in text.splitlines():
        if line.startswith('relayhook_task_failures_total{task="dispatcher"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_the_dispatcher_failing_at_a_store_call_is_logged_counted_and_resumes(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    storage_url = (
        "sqlite:///relayhook.db" if engine == "sqlite" else request.getfixturevalue("postgres_url")
    )
    with Receiver() as rx:
        server = RelayhookProcess(
            tmp_path,
            config(rx, storage_url),
            program=FAULTY,
            env={"RELAYHOOK_TEST_FAULTS": "claim_due=raise:3"},
        )
        with server:
            started = time.monotonic()
            post_events(server.url)
            wait_until(
                lambda: len(arrived(rx)) >= EVENTS,
                timeout=RESUME_WITHIN,
                interval=0.05,
                what="every event at the receiver",
            )
            took = time.monotonic() - started
            print(f"{engine}: 3 injected claim failures, every delivery arrived in {took:.1f} s")
            assert failures(server.url) == 3
            log = server.log()
        assert log.count("ERROR relayhook.runtime: dispatcher failed; starting it again") == 3
        assert "Traceback (most recent call last)" in log
        assert "RuntimeError: injected fault in claim_due" in log
        assert arrived(rx) == set(range(EVENTS))


def test_readyz_says_not_ready_while_no_claim_is_answered(tmp_path: Path) -> None:
    with Receiver() as rx:
        hung = config(rx, worker={"store_deadline": 0.3, "stalled_after": 1.5})
        server = RelayhookProcess(
            tmp_path, hung, program=FAULTY, env={"RELAYHOOK_TEST_FAULTS": "claim_due=hang:1000000"}
        )
        with server, http_client() as client:
            post_events(server.url, 3)

            def not_ready() -> dict[str, Any] | None:
                answer = client.get(server.url + "/readyz")
                return answer.json() if answer.status_code == 503 else None

            body = wait_until(not_ready, timeout=10, interval=0.1, what="/readyz 503")
            assert body["failing"] == ["dispatcher"]
            assert body["reasons"]["dispatcher"].startswith(
                "the dispatcher has made no claim round for "
            )
            assert body["reasons"]["dispatcher"].endswith(" while 3 deliveries wait")
            assert client.get(server.url + "/healthz").status_code == 200
            assert rx.count() == 0
            assert "no answer within 0.3 s ([worker] store_deadline)" in server.log()


def test_readyz_says_not_ready_when_the_disk_is_short(
    tmp_path: Path, start_server: StartServer
) -> None:
    with Receiver() as rx:
        text = config(rx).replace(
            '[storage]\nurl = "sqlite:///relayhook.db"\n',
            '[storage]\nurl = "sqlite:///relayhook.db"\nmin_free_mb = 1000000000\n',
        )
        server = start_server(tmp_path, text)
        with http_client() as client:
            answer = client.get(server.url + "/readyz")
        assert answer.status_code == 503
        assert answer.json()["reasons"] == {
            "disk": "less than 1000000000 MiB free on the disk of the store or the spool"
        }


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (from /proc: no tool needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_a_worker_opens_no_port_yet_delivers(tmp_path: Path, start_server: StartServer) -> None:
    db = tmp_path / "shared" / "relayhook.db"
    with Receiver() as rx:
        text = config(rx, f"sqlite:///{db}")
        web = start_server(tmp_path / "web", text, extra_args=["--role", "web"])
        workdir = tmp_path / "worker"
        workdir.mkdir()
        (workdir / "relayhook.toml").write_text(text, encoding="utf-8")
        log_path = workdir / "serve.log"
        unused = free_port()
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relayhook.cli",
                    "--config",
                    "relayhook.toml",
                    "serve",
                    "--role",
                    "worker",
                    "--host",
                    HOST,
                    "--port",
                    str(unused),
                ],
                cwd=workdir,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(
                lambda: "--role worker: started" in log_path.read_text(),
                timeout=30,
                interval=0.05,
                what="the worker started",
            )
            post_events(web.url, 3)
            rx.wait_for(3, timeout=15, path="/out/")
            assert listening_ports(worker.pid) == set()
            banner = log_path.read_text()
            assert "No port open (no admin API, no console)" in banner
        finally:
            worker.terminate()
            assert worker.wait(timeout=15) == 0
        assert "Traceback" not in log_path.read_text()


def test_a_worker_with_a_metrics_port_answers_health_but_no_admin_api(
    tmp_path: Path, start_server: StartServer
) -> None:
    with Receiver() as rx:
        worker = start_server(tmp_path, config(rx), extra_args=["--role", "worker"])
        assert listening_ports(worker.process.pid) == {worker.port}  # type: ignore[union-attr]
        with http_client(base_url=worker.url) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/readyz").json() == {"status": "ready"}
            assert "relayhook_deliveries" in client.get("/metrics").text
            assert client.get("/api/hooks", headers=AUTH).status_code == 404
            assert client.get("/").status_code == 404  # no console
            assert client.post(f"/in/{GEN.token}", json={}).status_code == 404  # no ingress
