"""Operations through real sockets (issue 7, item 5): `relayhook serve` as a subprocess, a real
receiver, a real SQLite file.

/healthz and /readyz (another connection holding the SQLite write lock makes it not ready),
/metrics read with prometheus_client's own parser, the log lines of failed attempts, dead
deliveries and deactivated hooks, the startup banner's inactive hooks, retention (in the
background and by `relayhook prune`), and `relayhook backup` while requests keep coming,
restored as the README says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from receiver import Receiver, Reply
from servers import (
    RelayConfig,
    RelayhookProcess,
    clean_env,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

from relayhook.core.events import Event, format_time
from relayhook.store import NewDelivery, RequestRecord, SQLiteStore

ADMIN = "admin-token-ops-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
GEN = RelayConfig("gen", "generic", "tok-gen-ops-0123456789")
GMETRI = RelayConfig("gm", "gmetri", "tok-gm-ops-0123456789", "gm-basic-secret-0123456789")
WAIT = 15.0
DAY = 86400.0


def config(
    rx: Receiver | None = None,
    *,
    hooks: list[dict[str, Any]] | None = None,
    **tables: dict[str, Any],
) -> str:
    hooks = (
        hooks
        if hooks is not None
        else []
        if rx is None
        else [
            {"name": "ok", "events": ["*"], "url": rx.url + "/ok/"},
            {
                "name": "flaky",
                "events": ["*"],
                "url": rx.url + "/flaky/",
                "retry": {"schedule": [0, 0.2], "jitter": 0},
            },
            {"name": "gone", "events": ["*"], "url": rx.url + "/gone/"},
        ]
    )
    tables.setdefault("delivery", {"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1})
    return (
        render_config(relays=[GEN, GMETRI], admin_token=ADMIN)
        + render_tables(**tables)
        + render_hooks(hooks)
    )


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as receiver:
        receiver.script("/flaky/", Reply(500))
        receiver.script("/gone/", Reply(410))
        yield receiver


def post(
    client: httpx.Client, relay: RelayConfig, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        f"/in/{relay.token}",
        content=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


# --- health and readiness -------------------------------------------------------------------


def test_healthz_and_readyz_say_little_and_readyz_sees_a_locked_store(tmp_path: Path) -> None:
    with RelayhookProcess(tmp_path, config()) as server, http_client(base_url=server.url) as c:
        health = c.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert c.get("/readyz").json() == {"status": "ready"}
        locker = sqlite3.connect(server.db_path, isolation_level=None, timeout=0)
        try:
            locker.execute("BEGIN IMMEDIATE")  # what another process writing would do
            started = time.monotonic()
            ready = c.get("/readyz")
            waited = time.monotonic() - started
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "not ready",
                "failing": ["store"],
                "reasons": {"store": "the store takes no writes now"},
            }
            print(f"/readyz answered 503 in {waited:.2f} s with the write lock held")
            assert waited < 2.5, waited  # the probe is bounded (1 s), not the 5 s busy wait
            assert c.get("/healthz").status_code == 200  # the process still answers
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        wait_until(
            lambda: c.get("/readyz").status_code == 200,
            timeout=WAIT,
            what="ready again once the lock is released",
        )


# --- metrics ----------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics answer, parsed by prometheus_client's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_metrics_count_requests_events_deliveries_and_the_backlog(
    tmp_path: Path, rx: Receiver
) -> None:
    with RelayhookProcess(tmp_path, config(rx)) as server, http_client(base_url=server.url) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        for n in range(2):
            assert post(c, GEN, json.dumps({"n": n}).encode()).status_code == 200
        assert post(c, GEN, b"{not json").status_code == 400
        assert post(c, GMETRI, b"{}", {"Authorization": "Basic wrong"}).status_code == 401
        assert c.post("/in/tok-nobody-0123456789", content=b"{}").status_code == 404
        rx.wait_for(2, timeout=WAIT, path="/ok/")
        rx.wait_for(4, timeout=WAIT, path="/flaky/")  # 2 events x 2 attempts: then dead

        def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            response = c.get("/metrics", headers=AUTH)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            found = samples(response.text)
            done = value(found, "relayhook_stored_deliveries", hook="flaky", status="dead")
            return found if done == 2 else None

        found = wait_until(scraped, timeout=WAIT, interval=0.5, what="2 dead deliveries")

    assert value(found, "relayhook_requests_total", relay="gen", code="200") == 2
    assert value(found, "relayhook_requests_total", relay="gen", code="400") == 1
    assert value(found, "relayhook_requests_total", relay="gm", code="401") == 1
    assert value(found, "relayhook_requests_total", relay="(unknown)", code="404") == 1
    assert value(found, "relayhook_ack_seconds_count", relay="gen") == 3
    assert value(found, "relayhook_ack_seconds_bucket", relay="gen", le="+Inf") == 3
    assert value(found, "relayhook_events_total", relay="gen") == 2
    assert value(found, "relayhook_auth_failures_total", relay="gm") == 1
    assert value(found, "relayhook_deliveries_total", hook="ok", outcome="succeeded") == 2
    assert value(found, "relayhook_deliveries_total", hook="flaky", outcome="failed") == 2
    assert value(found, "relayhook_deliveries_total", hook="flaky", outcome="dead") == 2
    assert (value(found, "relayhook_deliveries_total", hook="gone", outcome="paused") or 0) >= 1
    assert value(found, "relayhook_attempt_seconds_count", hook="flaky") == 4
    assert value(found, "relayhook_stored_deliveries", hook="gone", status="paused") == 2
    assert value(found, "relayhook_store_readable") == 1
    assert value(found, "relayhook_spool_depth") == 0
    assert not any(name == "relayhook_oldest_pending_age_seconds" for name, _ in found)
    assert not any("tok-" in label for _, labels in found for _, label in labels)


def test_public_metrics_need_no_token_and_show_the_oldest_pending_age(
    tmp_path: Path, rx: Receiver
) -> None:
    # One request an hour: the first event goes, the second waits, pending.
    hooks = [
        {
            "name": "later",
            "events": ["*"],
            "url": rx.url + "/ok/",
            "rate_limit": {"requests": 1, "window": 3600},
        }
    ]
    text = config(hooks=hooks, metrics={"public": True})
    with RelayhookProcess(tmp_path, text) as server, http_client(base_url=server.url) as c:
        assert post(c, GEN, b'{"n": 1}').status_code == 200
        rx.wait_for(1, timeout=WAIT, path="/ok/")
        assert post(c, GEN, b'{"n": 2}').status_code == 200
        time.sleep(0.01)  # not synchronization: the age must be measurably above zero
        found = samples(c.get("/metrics").text)
    assert value(found, "relayhook_stored_deliveries", hook="later", status="pending") == 1
    age = value(found, "relayhook_oldest_pending_age_seconds", hook="later")
    assert age is not None and 0 < age < 60


# --- logs and the banner ------------------------------------------------------------------------


def test_failed_attempts_dead_deliveries_and_deactivations_are_logged(
    tmp_path: Path, rx: Receiver
) -> None:
    server = RelayhookProcess(tmp_path, config(rx))
    with server, http_client(base_url=server.url) as c:
        assert post(c, GEN, b'{"n": 1}').status_code == 200
        rx.wait_for(2, timeout=WAIT, path="/flaky/")
        rx.wait_for(1, timeout=WAIT, path="/gone/")
        wait_until(
            lambda: "is dead after attempt 2" in server.log() and "deactivated" in server.log(),
            timeout=WAIT,
            what="the log lines",
        )
    log = server.log()
    failed = next(line for line in log.splitlines() if "attempt 1 failed" in line)
    assert "WARNING" in failed and "hook 'flaky': delivery " in failed
    assert "(HTTP 500); next try at 20" in failed
    dead = next(line for line in log.splitlines() if "is dead after" in line)
    assert "ERROR" in dead and "hook 'flaky'" in dead and "(HTTP 500)" in dead
    gone = next(line for line in log.splitlines() if "deactivated" in line)
    assert "hook 'gone' deactivated: 410 Gone: the hook was disabled" in gone

    server.start()  # the banner of the next start lists the hook a 410 deactivated
    server.stop()
    banner = server.log()
    assert "Hooks: 3, 2 active." in banner
    assert "  inactive: 'gone': 410 Gone: the hook was disabled" in banner
    assert "hook 'gone' is inactive: 410 Gone" in banner


def test_json_logs_are_one_object_a_line_with_fields(tmp_path: Path, rx: Receiver) -> None:
    server = RelayhookProcess(tmp_path, config(rx, log={"format": "json"}))
    with server, http_client(base_url=server.url) as c:
        assert post(c, GEN, b'{"n": 1}').status_code == 200
        wait_until(
            lambda: "is dead after attempt 2" in server.log(),
            timeout=WAIT,
            what="the dead delivery's line",
        )
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert {"time", "level", "logger", "message"} <= lines[0].keys()
    failed = next(line for line in lines if "attempt 1 failed" in line["message"])
    assert failed["level"] == "warning" and failed["hook"] == "flaky" and failed["attempt"] == 1
    assert failed["status"] == 500 and failed["next_try"].endswith("Z")
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # uvicorn's lines too


# --- retention ----------------------------------------------------------------------------------


def seed_old(
    db: Path, *, days_ago: float, count: int, prefix: str, hook: str | None = None
) -> None:
    """`count` requests of relay gen received `days_ago`, each with one event (and, with
    `hook`, a pending delivery), written before the server starts."""
    received = time.time() - days_ago * DAY

    async def main() -> None:
        store = SQLiteStore(db)
        await store.open()
        try:
            for n in range(count):
                request = RequestRecord(
                    id=f"{prefix}-{n}",
                    relay="gen",
                    received_at=format_time_at(received),
                    method="POST",
                    query="",
                    headers=(),
                    body=b"{}",
                    status="accepted",
                )
                event = Event(
                    id=f"{prefix}-e{n}",
                    source="s",
                    type="t",
                    subject=None,
                    time=request.received_at,
                    data={},
                    relay="gen",
                )
                routed = (
                    [
                        NewDelivery(
                            f"{prefix}-d{n}",
                            event.id,
                            hook,
                            None,
                            "pending",
                            received + 3600 * 24 * 365,
                        )
                    ]
                    if hook
                    else []
                )
                await store.ingest(request, [event], routed)
        finally:
            await store.close()

    asyncio.run(main())


def format_time_at(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(seconds, UTC))


def stored_ids(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM requests")}


def test_serve_prunes_old_requests_in_the_background(tmp_path: Path) -> None:
    hooks = [{"name": "waiting", "events": ["t"], "relays": ["gen"], "url": "http://127.0.0.1:9/"}]
    db = tmp_path / "relayhook.db"
    seed_old(db, days_ago=40, count=3, prefix="old")
    seed_old(db, days_ago=40, count=2, prefix="held", hook="waiting")  # unfinished: kept
    seed_old(db, days_ago=10, count=2, prefix="recent")
    with RelayhookProcess(tmp_path, config(hooks=hooks)) as server:
        wait_until(
            lambda: "retention: pruned 3 requests, 3 events, 0 deliveries" in server.log(),
            timeout=WAIT,
            what="the background prune",
        )
    assert stored_ids(db) == {"held-0", "held-1", "recent-0", "recent-1"}


def test_relayhook_prune_keeps_per_relay_days(tmp_path: Path) -> None:
    db = tmp_path / "relayhook.db"
    seed_old(db, days_ago=10, count=2, prefix="ten")
    seed_old(db, days_ago=3, count=1, prefix="three")
    path = tmp_path / "relayhook.toml"
    path.write_text(config(retention={"days": 30, "relays": {"gen": 7}}), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "relayhook.cli", "--config", str(path), "prune"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result
    assert result.stdout.startswith("pruned 2 requests, 2 events, 0 finished deliveries"), result
    assert stored_ids(db) == {"three-0"}


# --- backup while serving, and the restore the README describes --------------------------------


def test_backup_while_serving_then_restore(tmp_path: Path) -> None:
    copy = tmp_path / "backup" / "copy.db"
    copy.parent.mkdir()
    stop = threading.Event()
    answered: list[int] = []

    def load(url: str) -> None:
        with http_client(base_url=url) as client:
            for n in range(100_000):  # bounded; stopped by `stop` long before
                if stop.is_set():
                    return
                response = post(client, GEN, json.dumps({"n": n}).encode())
                answered.append(response.status_code)

    server = RelayhookProcess(tmp_path / "live", config())
    with server:
        thread = threading.Thread(target=load, args=(server.url,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: len(answered) >= 20, timeout=WAIT, what="traffic")
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "relayhook.cli",
                    "--config",
                    str(server.config_path),
                    "backup",
                    str(copy),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env=clean_env(),
                check=False,
                cwd=server.workdir,
            )
            during = len(answered)
            wait_until(
                lambda: len(answered) >= during + 20, timeout=WAIT, what="traffic after the backup"
            )
        finally:
            stop.set()
            thread.join(timeout=WAIT)
    assert result.returncode == 0, result
    assert f"into {copy}" in result.stdout
    assert set(answered) == {200}  # the backup held up no request
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        requests, events = conn.execute(
            "SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM events)"
        ).fetchone()
    assert 20 <= requests < len(answered) and events == requests
    assert requests < 1000  # the API lists them all below

    # Restore (README, Operations): stop, put the copy in the database's place, remove the
    # old -wal and -shm files, start.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{server.db_path}{suffix}").unlink(missing_ok=True)
    server.db_path.write_bytes(copy.read_bytes())
    with server, http_client(base_url=server.url) as c:
        items = c.get("/api/requests", params={"limit": 1000}, headers=AUTH).json()["items"]
    assert len(items) == requests


def test_backup_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.toml"
    path.write_text(config(), encoding="utf-8")
    (tmp_path / "there.db").write_bytes(b"keep me")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "relayhook.cli",
            "--config",
            str(path),
            "backup",
            str(tmp_path / "there.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "exists: give a new file" in result.stderr, result
    assert (tmp_path / "there.db").read_bytes() == b"keep me"
