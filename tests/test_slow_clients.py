"""Slow clients through real sockets: a `relayhook serve` with short deadlines (test-configured)
closes a connection that trickles its headers, one that sends nothing, one that stalls in its
body, and, past `max_connections`, the one that has waited longest for its headers.
"""

from __future__ import annotations

import contextlib
import json
import socket
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
    render_tables,
)

pytestmark = pytest.mark.slow

ARCADE = RelayConfig("arcade-slow", "synthesisvr", "tok-arcade-slow-0000001")
HEADER_TIMEOUT = 0.6
BODY_TIMEOUT = 0.8
MAX_CONNECTIONS = 6
SLACK = 1.5  # seconds a close may come after its deadline on a busy machine
BODY = json.dumps([{"uuid": "u-1", "action": "create", "customerid": 7}]).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayhookProcess]:
    config = render_config(relays=[ARCADE]) + render_tables(
        server={
            "header_timeout": HEADER_TIMEOUT,
            "body_timeout": BODY_TIMEOUT,
            "max_connections": MAX_CONNECTIONS,
        }
    )
    with RelayhookProcess(tmp_path_factory.mktemp("slow"), config) as process:
        yield process


@contextlib.contextmanager
def connection(server: RelayhookProcess) -> Iterator[socket.socket]:
    sock = socket.create_connection((HOST, server.port), timeout=10)
    try:
        yield sock
    finally:
        sock.close()


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes `sock` within `timeout` (reading and dropping any answer)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def trickle(sock: socket.socket, data: bytes, seconds: float, every: float = 0.1) -> float:
    """Send `data` a byte every `every` seconds until the server closes the socket or `seconds`
    pass; the time it took."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > seconds:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        sock.settimeout(every)
        try:
            if sock.recv(1) == b"":
                break
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
    return time.monotonic() - started


def request_head(length: int = len(BODY)) -> bytes:
    return (
        f"POST /in/{ARCADE.token} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json"
        f"\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(
    server: RelayhookProcess,
) -> None:
    with connection(server) as sock:
        took = trickle(sock, request_head() * 20, seconds=HEADER_TIMEOUT + SLACK + 2)
        assert HEADER_TIMEOUT * 0.9 <= took <= HEADER_TIMEOUT + SLACK, took
        assert closed_by_server(sock, 1.0)


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
    server: RelayhookProcess,
) -> None:
    with connection(server) as sock:
        started = time.monotonic()
        assert closed_by_server(sock, HEADER_TIMEOUT + SLACK)
        assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9


def test_a_body_that_stalls_is_cut_off_at_the_body_deadline(server: RelayhookProcess) -> None:
    with connection(server) as sock:
        sock.sendall(request_head() + BODY[:5])
        started = time.monotonic()
        assert closed_by_server(sock, BODY_TIMEOUT + SLACK)
        assert time.monotonic() - started >= BODY_TIMEOUT * 0.9


def test_a_kept_alive_connection_gets_a_new_header_deadline(server: RelayhookProcess) -> None:
    with connection(server) as sock:
        sock.sendall(request_head() + BODY)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        took = trickle(sock, request_head(), seconds=HEADER_TIMEOUT + SLACK + 2)
        assert took <= HEADER_TIMEOUT + SLACK, took


def test_a_request_in_time_is_answered(server: RelayhookProcess) -> None:
    with connection(server) as sock:
        head = request_head()
        sock.sendall(head[:10])
        time.sleep(HEADER_TIMEOUT / 3)  # not synchronization: slow, but within the deadline
        sock.sendall(head[10:] + BODY)
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_past_max_connections_the_longest_waiting_one_is_closed(
    server: RelayhookProcess, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(connection(server)) for _ in range(MAX_CONNECTIONS)]
        time.sleep(0.05)  # not synchronization: the idle ones connect first, in this order
        with http_client(base_url=server.url) as client:  # one more: over the limit
            response = client.post(f"/in/{ARCADE.token}", content=BODY)
        assert response.status_code == 200, response.text
        assert closed_by_server(idle[0], 1.0), "the oldest idle connection was not closed"
        assert not closed_by_server(idle[-1], 0.05)


def test_the_private_uvicorn_hooks_web_slow_overrides_are_still_there() -> None:
    """web/slow.py subclasses uvicorn's private HttpToolsProtocol: a uvicorn release that
    renames one of the hooks it overrides, or an attribute it reads, must fail here, loudly,
    not silently leave slow clients unbounded."""
    import asyncio
    import inspect

    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
    from uvicorn.server import ServerState

    from relayhook.web.slow import OVERRIDDEN, USED_ATTRIBUTES

    assert {
        "scope",
        "transport",
        "flow",
        "logger",
        "access_logger",
        "access_log",
        "default_headers",
        "message_event",
        "expect_100_continue",
        "keep_alive",
        "on_response",
    } <= set(inspect.signature(RequestResponseCycle).parameters), (
        "uvicorn's RequestResponseCycle takes other arguments now: see web/slow.py"
    )
    for name in OVERRIDDEN:
        assert callable(getattr(HttpToolsProtocol, name, None)), (
            f"uvicorn's HttpToolsProtocol has no {name}(): web/slow.py relies on it"
        )

    async def attributes() -> set[str]:
        config = Config(app=lambda scope, receive, send: None, http="httptools")
        config.load()
        protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        return set(vars(protocol))

    missing = set(USED_ATTRIBUTES) - asyncio.run(attributes())
    assert not missing, f"uvicorn's HttpToolsProtocol lost {sorted(missing)}: see web/slow.py"
