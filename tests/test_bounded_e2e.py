"""Under attack, through real sockets: a `relayhook serve` bounds what a request's headers may
cost (431 before the parser holds more than the limits, the request kept small), and a hook's
`when` with a catastrophic regex on provider data no longer holds another relay's answers.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    HOST,
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

pytestmark = pytest.mark.slow

TOKEN = "admin-token-bounded-0001"
GENERIC = RelayConfig("open-door", "generic", "tok-bounded-generic-001")
ARCADE = RelayConfig("arcade", "synthesisvr", "tok-bounded-arcade-0001")
CATASTROPHIC = r"^([a-zA-Z0-9]+)+@example\.com$"  # `re`: 2 min 18 s for 30 characters
MIB = 1 << 20
ATTACK_PAUSE = 0.04  # seconds between two catastrophic posts
ARCADE_POSTS = 400  # timed answers of the other relay: its p99 is the 4th slowest
SESSION = json.dumps([{"uuid": "u-1", "action": "create", "customerid": 7}]).encode()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelayhookProcess]:
    hooks = render_hooks(
        [
            {
                "name": "example-com-only",
                "events": ["generic.webhook.received"],
                "when": "{{ event.data.email | default('') | regex_search('"
                + CATASTROPHIC.replace("\\", "\\\\")
                + "') }}",
                "url": "http://127.0.0.1:9/never",  # the condition is false: nothing is sent
            }
        ]
    )
    storage = (
        "sqlite:///relayhook.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_database").url()
    )
    config = (
        render_config(relays=[GENERIC, ARCADE], admin_token=TOKEN, storage_url=storage)
        + render_tables(delivery={"allow_cidrs": ["127.0.0.0/8"]})
        + hooks
    )
    with RelayhookProcess(tmp_path_factory.mktemp("bounded"), config) as process:
        yield process


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def flood(port: int, path: str, header_bytes: int, answers: list[bytes]) -> None:
    """Send a request whose one header is `header_bytes` long, as fast as the server reads;
    what it answered goes into `answers` (read by a thread of its own, so that the answer
    is seen even when the server closes while we still send)."""
    sock = socket.create_connection((HOST, port), timeout=20)
    got = bytearray()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                got.extend(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    try:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Flood: ".encode())
        chunk = b"a" * (256 * 1024)
        for _ in range(header_bytes // len(chunk)):
            sock.sendall(chunk)
        sock.sendall(b"\r\n\r\n")
    except OSError:
        pass  # the server stopped reading: the point
    finally:
        reader.join(timeout=20)
        sock.close()
    answers.append(bytes(got))


def raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(head)
        got = bytearray()
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                got.extend(chunk)
        except OSError:
            pass
        return bytes(got)


def stored_requests(server: RelayhookProcess) -> list[dict[str, object]]:
    with http_client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        answer = client.get(server.url + "/api/requests", params={"relay": GENERIC.name})
        assert answer.status_code == 200
        items: list[dict[str, object]] = answer.json()["items"]
        return items


def test_16_mib_of_headers_is_refused_with_431_and_nothing_large_is_stored(
    server: RelayhookProcess,
) -> None:
    before = server.db_path.stat().st_size if server.db_path.exists() else 0
    answers: list[bytes] = []
    flood(server.port, f"/in/{GENERIC.token}", 16 * MIB, answers)
    assert answers[0].startswith(b"HTTP/1.1 431 "), answers[0][:200]
    assert b"larger than 32768 bytes" in answers[0]
    kept = wait_until(
        lambda: [
            r
            for r in stored_requests(server)
            if r["status"] == "rejected" and "headers read before the limit" in str(r["error"])
        ],
        timeout=10,
        what="the refused request kept",
    )
    assert len(json.dumps(kept[0])) < 64 * 1024
    if server.db_path.exists():  # SQLite: the file itself (16.5 MB more before the limit)
        assert server.db_path.stat().st_size - before < MIB
    with http_client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        metrics = client.get(server.url + "/metrics").text
        refused = [
            line
            for line in metrics.splitlines()
            if line.startswith('relayhook_headers_refused_total{status="431"}')
        ]
        assert refused and float(refused[0].split()[-1]) >= 1, metrics[:2000]
    with http_client() as client:  # and the server takes the next request as usual
        assert client.post(server.url + f"/in/{GENERIC.token}", json={"a": 1}).status_code == 200


def test_a_client_that_sends_all_its_headers_before_reading_still_gets_the_431(
    server: RelayhookProcess,
) -> None:
    # Past the limit the server reads on and drops what comes (a lingering close): without
    # that, closing with unread data resets the connection before the client reads the 431.
    with socket.create_connection((HOST, server.port), timeout=20) as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(64):  # 16 MiB, more than the socket buffers hold
            sock.sendall(b"z" * (256 * 1024))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


@pytest.mark.parametrize(
    ("head", "status"),
    [
        pytest.param(b"".join(b"X-F%d: v\r\n" % n for n in range(101)), 431, id="101 fields"),
        pytest.param(b"X-Long: " + b"b" * 9000 + b"\r\n", 431, id="a 9,000-byte line"),
        pytest.param(
            b"".join(b"X-F%d: %s\r\n" % (n, b"c" * 4000) for n in range(9)), 431, id="36 KB in all"
        ),
    ],
)
def test_headers_past_each_limit_are_answered_431(
    server: RelayhookProcess, head: bytes, status: int
) -> None:
    answer = raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"connection: close" in answer.lower()


def test_a_request_line_past_8_kib_is_answered_414(server: RelayhookProcess) -> None:
    answer = raw_request(server.port, b"GET /in/" + b"t" * 9000 + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414 "), answer[:200]


def test_headers_within_the_limits_pass(server: RelayhookProcess) -> None:
    head = b"".join(b"X-F%d: %s\r\n" % (n, b"d" * 3000) for n in range(9))  # 27 KB, 9 lines
    answer = raw_request(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_eight_64_mib_header_floods_grow_rss_by_less_than_20_mib(server: RelayhookProcess) -> None:
    assert server.process is not None
    pid = server.process.pid
    baseline = rss_kib(pid)
    peak = [baseline]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            done.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    answers: list[bytes] = []
    floods = [
        threading.Thread(target=flood, args=(server.port, f"/in/{ARCADE.token}", 64 * MIB, answers))
        for _ in range(8)
    ]
    for thread in floods:
        thread.start()
    for thread in floods:
        thread.join(timeout=60)
    done.set()
    watcher.join()
    growth_mib = (peak[0] - baseline) / 1024
    print(
        f"RSS under eight 64 MiB header floods: {baseline / 1024:.1f} MiB -> peak "
        f"{peak[0] / 1024:.1f} MiB (+{growth_mib:.1f} MiB)"
    )
    assert len(answers) == 8
    assert all(a.startswith(b"HTTP/1.1 4") for a in answers), [a[:40] for a in answers]
    assert growth_mib < 20


def arcade_ack_p99(server: RelayhookProcess) -> tuple[float, float]:
    """(p99, median) in seconds of ARCADE_POSTS SynthesisVR arrays posted one after another."""
    seconds: list[float] = []
    with http_client() as client:
        for _ in range(ARCADE_POSTS):
            started = time.perf_counter()
            answer = client.post(
                server.url + f"/in/{ARCADE.token}",
                content=SESSION,
                headers={"Content-Type": "application/json"},
            )
            seconds.append(time.perf_counter() - started)
            assert answer.status_code == 200
    return statistics.quantiles(seconds, n=100)[98], statistics.median(seconds)


def test_a_catastrophic_regex_on_one_relay_does_not_hold_another_relays_answers(
    server: RelayhookProcess,
) -> None:
    stop = threading.Event()
    posted = [0]

    def attack() -> None:
        # 25 posts a second: with `re` one alone held the process for minutes; this measures
        # that none holds it now, not how a flood of any request queues up behind itself.
        with http_client() as client:
            while not stop.wait(ATTACK_PAUSE) and posted[0] < 2000:
                email = "a" * (30 + posted[0] % 20) + "!"
                answer = client.post(server.url + f"/in/{GENERIC.token}", json={"email": email})
                assert answer.status_code == 200
                posted[0] += 1

    quiet_p99, _ = arcade_ack_p99(server)  # the machine's own tail, without the attack
    attacker = threading.Thread(target=attack)
    attacker.start()
    try:
        wait_until(lambda: posted[0] >= 5, timeout=10, what="the attack under way")
        p99, median = arcade_ack_p99(server)
    finally:
        stop.set()
        attacker.join(timeout=30)
    print(
        f"arcade ack p99 while {posted[0]} catastrophic inputs were posted to open-door: "
        f"{p99 * 1000:.1f} ms (median {median * 1000:.1f} ms; {quiet_p99 * 1000:.1f} ms "
        "without them)"
    )
    assert posted[0] >= 5
    # The bound; on a machine whose own tail is past it (other work running), no
    # more than twice that tail. With `re` either one was missed by seconds to minutes.
    assert p99 < max(0.100, 2 * quiet_p99)
