"""The spool: the file itself (unit tests), then end to end through real sockets: another
connection holds SQLite's write lock while SynthesisVR arrays arrive; every one is answered 200
within a second, and once the lock is gone each is stored exactly once, with its event and its
delivery, which the receiver gets once. The same across a SIGKILL while they sit in the spool.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from receiver import Receiver
from servers import (
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

from relayhook.spool import Spool, SpoolError, encode_entry
from relayhook.store import RequestRecord

ADMIN_TOKEN = "admin-token-spool-0123456789"
ARCADE = RelayConfig("arcade-spool", "synthesisvr", "tok-arcade-spool-0000001")
LOCK_SECONDS = 5.0
ANSWER_WITHIN = 1.0  # SynthesisVR gives up after 2 s
WAIT = 30.0


def record(request_id: str, body: bytes = b"[]", **changes: object) -> RequestRecord:
    fields: dict[str, object] = dict(
        id=request_id,
        relay="arcade",
        received_at="2024-05-01T12:00:00.000Z",
        method="POST",
        query="a=1",
        headers=(("content-type", "application/json"),),
        body=body,
        status="accepted",
    )
    fields.update(changes)
    return RequestRecord(**fields)  # type: ignore[arg-type]


# --- the file -----------------------------------------------------------------------------------


def test_records_come_back_in_order_exactly_as_appended(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "relayhook.spool")
    spool.open()
    odd = record(
        "r2", body=bytes(range(256)), status="rejected", error="bad \ud800 \u00e9", truncated=True
    )
    spool.append(record("r1"))
    spool.append(odd)

    assert spool.depth == 2
    got = [r for _, r in spool.read()]
    assert got[0] == record("r1")
    assert got[1] == odd
    spool.close()


def test_drained_empties_the_file_only_once_everything_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.spool"
    spool = Spool(path)
    spool.open()
    for n in range(3):
        spool.append(record(f"r{n}"))
    entries = spool.read(limit=2)
    spool.drained(entries[-1][0], 2)
    assert spool.depth == 1 and path.stat().st_size > 0
    spool.append(record("r3"))  # arrives while the drain goes on

    rest = spool.read()
    assert [r.id for _, r in rest] == ["r2", "r3"]
    spool.drained(rest[-1][0], 2)
    assert spool.depth == 0 and path.stat().st_size == 0
    spool.close()


def test_a_reopened_spool_hands_over_what_was_not_drained(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.spool"
    spool = Spool(path)
    spool.open()
    spool.append(record("r1"))
    spool.append(record("r2"))
    spool.close()  # or a crash: nothing was drained

    again = Spool(path)
    again.open()
    assert again.depth == 2
    assert [r.id for _, r in again.read()] == ["r1", "r2"]
    again.close()


def test_a_half_written_last_line_is_cut_and_a_damaged_one_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.spool"
    damaged = bytearray(encode_entry(record("r2")))
    damaged[20] ^= 0x01  # one bit flipped: the CRC no longer matches
    path.write_bytes(
        encode_entry(record("r1"))
        + bytes(damaged)
        + encode_entry(record("r3"))
        + encode_entry(record("r4"))[:30]
    )  # a crash while appending r4
    spool = Spool(path)
    spool.open()

    first = spool.read()
    assert [r.id for _, r in first] == ["r1"]  # the damaged line stops the read after r1...
    spool.drained(first[-1][0], 1)
    second = spool.read()
    assert [r.id for _, r in second] == ["r3"]  # ...and is passed over when it comes first
    spool.drained(second[-1][0], 1)
    assert path.stat().st_size == 0
    assert (tmp_path / "relayhook.spool.bad").read_bytes() == bytes(damaged)
    spool.append(record("r5"))  # appends go on after the cut
    assert [r.id for _, r in spool.read()] == ["r5"]
    spool.close()


def test_one_process_owns_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path / "relayhook.spool")
    first.open()
    with pytest.raises(SpoolError, match="in use by another relayhook process"):
        Spool(tmp_path / "relayhook.spool").open()
    first.close()


# --- end to end ---------------------------------------------------------------------------------


def config(receiver: Receiver) -> str:
    hooks = [
        {
            "name": "sessions",
            "events": ["synthesisvr.session.*"],
            "url": receiver.url + "/sessions/",
            "retry": {"schedule": [0, 1, 1, 1, 1]},
        }
    ]
    return (
        render_config(relays=[ARCADE], admin_token=ADMIN_TOKEN)
        + render_tables(delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1})
        + render_hooks(hooks)
    )


def session(n: int) -> bytes:
    item = {
        "uuid": str(uuid.UUID(int=n)),
        "action": "create",
        "location": "Spool Test",
        "stations": 1,
        "customerid": 1000 + n,
    }
    return json.dumps([item]).encode()


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Another process's write transaction: SQLite's write lock, held for the block."""
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@dataclass
class Arrivals:
    """SynthesisVR posting one array after another from a few threads."""

    url: str
    answers: dict[int, tuple[int, float, dict[str, object]]] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_n: int = 0

    def post_for(self, seconds: float, threads: int = 3) -> None:
        stop = time.monotonic() + seconds
        workers = [threading.Thread(target=self._post_until, args=(stop,)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=seconds + 30)

    def _post_until(self, stop: float) -> None:
        try:
            with http_client(timeout=10.0) as client:
                while time.monotonic() < stop:
                    with self.lock:
                        n, self.next_n = self.next_n, self.next_n + 1
                    started = time.monotonic()
                    response = client.post(
                        self.url, content=session(n), headers={"Content-Type": "application/json"}
                    )
                    took = time.monotonic() - started
                    with self.lock:
                        self.answers[n] = (response.status_code, took, response.json())
                    time.sleep(0.05)  # not synchronization: SynthesisVR's pace, roughly
        except BaseException as exc:
            with self.lock:
                self.errors.append(exc)


def stored(db: Path) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Per request id: its rows, its events, its deliveries."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        requests = dict(conn.execute("SELECT id, count(*) FROM requests GROUP BY id"))
        events = dict(conn.execute("SELECT request_id, count(*) FROM events GROUP BY request_id"))
        deliveries = dict(
            conn.execute(
                "SELECT e.request_id, count(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
                " GROUP BY e.request_id"
            )
        )
    return requests, events, deliveries


def assert_each_stored_once(
    server: RelayhookProcess, receiver: Receiver, request_ids: list[str]
) -> None:
    def all_there() -> bool:
        requests, events, deliveries = stored(server.db_path)
        return all(deliveries.get(rid) == 1 for rid in request_ids)

    wait_until(all_there, timeout=WAIT, what="every spooled request stored")
    requests, events, deliveries = stored(server.db_path)
    assert all(requests[rid] == 1 and events[rid] == 1 for rid in request_ids)
    assert len(requests) == len(request_ids)  # nothing else, nothing twice
    got = receiver.wait_for(len(request_ids), timeout=WAIT, path="/sessions/")
    ids = [dict(r.headers)["webhook-id"] for r in got]
    assert len(set(ids)) == len(request_ids), "a delivery was sent for a duplicate"
    wait_until(
        lambda: server.db_path.with_suffix(".spool").stat().st_size == 0,
        timeout=WAIT,
        what="the spool emptied",
    )


@pytest.mark.slow
def test_a_locked_store_spools_every_request_and_stores_each_once_when_freed(
    tmp_path: Path,
) -> None:
    with Receiver() as receiver, RelayhookProcess(tmp_path, config(receiver)) as server:
        arrivals = Arrivals(f"{server.url}/in/{ARCADE.token}")
        with write_lock(server.db_path):
            arrivals.post_for(LOCK_SECONDS)
        assert not arrivals.errors, arrivals.errors

        slow = {n: a for n, a in arrivals.answers.items() if a[0] != 200 or a[1] > ANSWER_WITHIN}
        assert not slow, f"answered late or not 200: {slow}"
        spooled = [n for n, a in arrivals.answers.items() if a[2].get("spooled")]
        assert len(spooled) >= len(arrivals.answers) - 3, "the store was locked: spooled"
        worst = max(took for _, took, _ in arrivals.answers.values())
        print(
            f"{len(arrivals.answers)} arrays in {LOCK_SECONDS} s of lock, {len(spooled)}"
            f" spooled, slowest answer {worst * 1000:.0f} ms"
        )
        request_ids = [str(a[2]["request_id"]) for a in arrivals.answers.values()]
        assert_each_stored_once(server, receiver, request_ids)
        # In the order they came: each thread's requests are stored in the order it sent them.
        with contextlib.closing(sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True)) as c:
            order = [row[0] for row in c.execute("SELECT id FROM requests ORDER BY seq")]
        by_n = sorted(arrivals.answers)
        positions = [order.index(str(arrivals.answers[n][2]["request_id"])) for n in by_n]
        assert len(positions) == len(set(positions))


@pytest.mark.slow
def test_spooled_requests_survive_a_sigkill_and_are_stored_once_after_the_restart(
    tmp_path: Path,
) -> None:
    with Receiver() as receiver:
        server = RelayhookProcess(tmp_path, config(receiver))
        try:
            server.start()
            arrivals = Arrivals(f"{server.url}/in/{ARCADE.token}")
            with write_lock(server.db_path):
                arrivals.post_for(2.0)
                server.kill()  # with the requests in the spool and the store still locked
            assert not arrivals.errors, arrivals.errors
            assert all(a[0] == 200 and a[2].get("spooled") for a in arrivals.answers.values())
            assert server.db_path.with_suffix(".spool").stat().st_size > 0
            request_ids = [str(a[2]["request_id"]) for a in arrivals.answers.values()]

            server.start()
            assert_each_stored_once(server, receiver, request_ids)
        finally:
            server.close(quiet=True)


@pytest.mark.slow
def test_a_spool_partly_stored_before_a_crash_is_stored_without_duplicates(
    tmp_path: Path,
) -> None:
    """A crash between the store's commit and the spool's emptying: the requests are handed
    over again, and the store skips the ids it has."""
    with Receiver() as receiver:
        server = RelayhookProcess(tmp_path, config(receiver))
        try:
            server.start()
            with http_client(base_url=server.url) as client:
                answers = [
                    client.post(f"/in/{ARCADE.token}", content=session(n)).json() for n in range(3)
                ]
            server.stop()
            # The spool as the crash left it: the three stored ones, then two never stored.
            spooled = [
                record(a["request_id"], session(n), relay=ARCADE.name)
                for n, a in enumerate(answers)
            ]
            spooled += [
                record(f"0190f000-0000-7000-8000-00000000000{n}", session(n), relay=ARCADE.name)
                for n in (3, 4)
            ]
            server.db_path.with_suffix(".spool").write_bytes(
                b"".join(encode_entry(r) for r in spooled)
            )

            server.start()
            assert_each_stored_once(server, receiver, [r.id for r in spooled])
        finally:
            server.close(quiet=True)


@pytest.mark.slow
def test_answers_stay_fast_when_the_spool_is_not_needed(tmp_path: Path) -> None:
    with Receiver() as receiver, RelayhookProcess(tmp_path, config(receiver)) as server:
        with http_client(base_url=server.url) as client:
            response = client.post(f"/in/{ARCADE.token}", content=session(1))
        assert response.status_code == 200
        assert set(response.json()) == {"accepted", "duplicates", "request_id"}
        assert not server.db_path.with_suffix(".spool").stat().st_size


class FileSizeLimitedProcess(RelayhookProcess):
    """`relayhook serve` that may not grow any file past `limit` bytes (RLIMIT_FSIZE): past it,
    a write fails with EFBIG, as on a full disk (Python ignores SIGXFSZ)."""

    def __init__(self, *args: object, limit: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.limit = limit

    def command(self) -> list[str]:
        command = super().command()
        wrapper = (
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({self.limit}, {self.limit})); "
            "os.execv(sys.argv[1], sys.argv[1:])"
        )
        return [command[0], "-c", wrapper, *command]


@pytest.mark.slow
def test_only_when_the_spool_cannot_write_either_is_the_answer_503(tmp_path: Path) -> None:
    generic = RelayConfig("generic-spool", "generic", "tok-generic-spool-000001")
    body = json.dumps({"blob": "x" * 300_000}).encode()  # ~400 KB in the spool (base64)
    server = FileSizeLimitedProcess(tmp_path, render_config(relays=[generic]), limit=1_000_000)
    try:
        server.start()
        url = f"{server.url}/in/{generic.token}"
        with write_lock(server.db_path), http_client(timeout=10.0) as client:
            answers = [client.post(url, content=body) for _ in range(3)]
        statuses = [a.status_code for a in answers]
        assert statuses == [200, 200, 503], [a.text for a in answers]
        assert all(a.json().get("spooled") for a in answers[:2])
        kept = [a.json()["request_id"] for a in answers[:2]]

        assert "spool cannot take it either" in server.log()
        server.stop()
    finally:
        server.close(quiet=True)
    # Room again (a new start without the limit): the two spooled ones are stored.
    with RelayhookProcess(tmp_path, render_config(relays=[generic])) as again:
        wait_until(
            lambda: set(stored(again.db_path)[0]) >= set(kept),
            timeout=WAIT,
            what="the spool drained",
        )
        assert answers[2].json()["request_id"] not in stored(again.db_path)[0]
        assert again.db_path.with_suffix(".spool").stat().st_size == 0
