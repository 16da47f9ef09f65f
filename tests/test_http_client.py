"""The shared outbound client through real sockets, on 127.0.0.1 and ::1 only.

Every destination here is a loopback address, so even a broken guard sends nothing off this host;
other ranges are tested against the policy itself in test_ssrf.py. A `Canary` counts the
connections that reach it from the kernel's backlog, so "zero connections" is not a race.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from servers import Canary, free_port

from relayhook.core.ssrf import (
    DestinationPolicy,
    DestinationRefused,
    refusal_reason,
)
from relayhook.delivery.destinations import SystemResolver
from relayhook.delivery.http import (
    GuardedTransport,
    PolicyResolver,
    guarded_socket,
    make_aiohttp_session,
    make_http_client,
    make_http_transport,
)
from relayhook.delivery.sender import HttpxSender, Reply, sender_for

HOST = "127.0.0.1"
TEST_LIMIT = 15.0  # seconds; no test here may take longer, whatever the code under test does
DEFAULT = DestinationPolicy()
LOOPBACK_V4 = DestinationPolicy(allow=(ip_network("127.0.0.1/32"),))
# A name internal by definition (`localhost`) is resolved only under allow_private_destinations:
# allow_cidrs admits addresses, not names (issue 17, item 6).
LOCALHOST = DestinationPolicy(allow_private=True)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(TEST_LIMIT):
            return await coro

    return asyncio.run(bounded())


Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Event], Awaitable[None]]


class Receiver:
    """An HTTP/1.1 server on `host` in the running loop: records each request's head, then
    lets `respond` answer (or not). One request per connection.

        async with Receiver(reply(302, location=...)) as receiver:
            ... receiver.url, receiver.requests[0]["host"]
    """

    def __init__(
        self, respond: Respond, host: str = HOST, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.respond = respond
        self.host = host
        self.ssl_context = ssl_context
        self.requests: list[dict[str, str]] = []
        self.port = 0
        self._closing = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._closing.set()  # handlers that wait or drip return, rather than being cancelled
        self._server.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(parse_head(head))
            await self.respond(reader, writer, self._closing)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away: what several tests make it do
        finally:
            writer.close()


def parse_head(head: bytes) -> dict[str, str]:
    """The request line as `_line`, then each header by its lower-case name."""
    line, *fields = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    parsed = {"_line": line}
    for field in fields:
        name, _, value = field.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return parsed


def reply(status: int = 200, body: bytes = b"ok", **headers: str) -> Respond:
    async def respond(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closing: asyncio.Event
    ) -> None:
        lines = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    return respond


async def pause(closing: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`; True at once if the receiver is closing."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await closing.wait()
    return closing.is_set()


async def never_answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closing: asyncio.Event
) -> None:
    await closing.wait()


async def drip_headers(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closing: asyncio.Event
) -> None:
    """A status line, then one header every 0.1 s: reads never wait long, headers never end."""
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for n in range(600):
        writer.write(f"X-Drip-{n}: 1\r\n".encode())
        await writer.drain()
        if await pause(closing, 0.1):
            return


async def drip_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closing: asyncio.Event
) -> None:
    """Headers at once, then one body byte every 0.1 s of a 100 kB body."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(600):
        writer.write(b"x")
        await writer.drain()
        if await pause(closing, 0.1):
            return


@pytest.fixture
def canaries() -> Iterator[tuple[Canary, Canary | None]]:
    """A canary on 127.0.0.1 and, where this host has IPv6 loopback, one on ::1 at the same
    port (so `localhost:P` is covered whichever address it resolves to)."""
    for _ in range(5):
        v4 = Canary(HOST)
        try:
            v6: Canary | None = Canary("::1", v4.port)
        except OSError as exc:
            v6 = None
            if exc.errno == errno.EADDRINUSE:
                v4.close()
                continue
        break
    else:
        pytest.fail("no port free on both 127.0.0.1 and ::1 after 5 tries")
    try:
        yield v4, v6
        for canary in (v4, v6):
            if canary is not None:
                assert canary.connections() == 0, f"the canary on {canary.host} was reached"
    finally:
        v4.close()
        if v6 is not None:
            v6.close()


# Both faces of the guarded transport: httpx's API, and `send` as the dispatcher calls it.
FACES = [pytest.param("httpx", id="through httpx"), pytest.param("send", id="through send")]


async def post(client: httpx.AsyncClient, face: str, url: str, timeout: float = 2.0) -> int:
    """POST `{}` to `url` through `face` of the client's transport; the status."""
    if face == "httpx":
        return (await client.post(url, content=b"{}", timeout=timeout)).status_code
    transport = client._transport  # type: ignore[attr-defined]
    assert isinstance(transport, GuardedTransport)
    return (await send(transport, url, timeout=timeout)).status


async def refused(client: httpx.AsyncClient, url: str) -> httpx.HTTPError:
    with pytest.raises(httpx.ConnectError) as caught:
        await client.get(url, timeout=2.0)
    return caught.value


LOOPBACK_SPELLINGS = [
    pytest.param("http://127.0.0.1:{p}/", "127.0.0.1 is a loopback address", id="127.0.0.1"),
    pytest.param("http://127.1:{p}/", "an unusual form of 127.0.0.1", id="127.1"),
    pytest.param("http://0x7f000001:{p}/", "an unusual form of 127.0.0.1", id="0x7f000001"),
    pytest.param("http://2130706433:{p}/", "an unusual form of 127.0.0.1", id="2130706433"),
    pytest.param("http://0177.1:{p}/", "an unusual form of 127.0.0.1", id="0177.1"),
    pytest.param("http://0x7f.1:{p}/", "an unusual form of 127.0.0.1", id="0x7f.1"),
    pytest.param("http://localhost:{p}/", "localhost is a loopback name", id="localhost"),
    pytest.param("http://LocalHost:{p}/x?y=1", "loopback name", id="LocalHost"),
    pytest.param("http://localhost.:{p}/", "loopback name", id="localhost."),
    pytest.param(
        "http://[::ffff:127.0.0.1]:{p}/", "IPv4-mapped form of 127.0.0.1", id="[::ffff:127.0.0.1]"
    ),
    pytest.param(
        "http://[::ffff:7f00:1]:{p}/", "IPv4-mapped form of 127.0.0.1", id="[::ffff:7f00:1]"
    ),
    pytest.param("https://127.0.0.1:{p}/", "127.0.0.1 is a loopback address", id="https"),
]


@pytest.mark.parametrize(("template", "words"), LOOPBACK_SPELLINGS)
def test_default_policy_refuses_loopback_in_every_spelling(
    canaries: tuple[Canary, Canary | None], template: str, words: str
) -> None:
    url = template.format(p=canaries[0].port)

    async def main() -> str | None:
        client = make_http_client(DEFAULT)
        try:
            return refusal_reason(await refused(client, url))
        finally:
            await client.aclose()

    reason = run(main())
    assert reason is not None
    assert words in reason
    way_out = (
        "write the address as a.b.c.d"
        if "unusual" in words
        else (
            "allow_private_destinations"
            if "name" in words
            else "allow_private_destinations or allow_cidrs"
        )
    )
    assert way_out in reason
    assert all(canary.connections() == 0 for canary in canaries if canary is not None)


def test_default_policy_refuses_ipv6_loopback(canaries: tuple[Canary, Canary | None]) -> None:
    if canaries[1] is None:
        pytest.skip("::1 cannot be bound here, so there is no IPv6 canary")

    async def main() -> str | None:
        client = make_http_client(DEFAULT)
        try:
            return refusal_reason(await refused(client, f"http://[::1]:{canaries[0].port}/"))
        finally:
            await client.aclose()

    assert run(main()) == (
        "::1 is a loopback address"
        " (set [delivery] allow_private_destinations or allow_cidrs to reach it)"
    )
    assert canaries[1].connections() == 0


def test_a_dotted_quad_with_leading_zeros_is_not_even_a_url(
    canaries: tuple[Canary, Canary | None],
) -> None:
    async def main() -> None:
        client = make_http_client(DEFAULT)
        try:
            with pytest.raises(httpx.InvalidURL):
                await client.get(f"http://0177.0.0.1:{canaries[0].port}/")
        finally:
            await client.aclose()

    run(main())


def test_the_canary_sees_a_connection_the_policy_allows() -> None:
    """The control for the tests above: the same client does reach a canary it may reach."""

    async def main(canary: Canary) -> None:
        client = make_http_client(LOCALHOST)
        try:
            with pytest.raises(httpx.TimeoutException):
                await client.get(canary.url, timeout=0.3)  # it never accepts, so never answers
        finally:
            await client.aclose()

    hosts = [HOST, "::1"] if ipv6_loopback() else [HOST]
    for host in hosts:
        with Canary(host) as canary:
            run(main(canary))
            assert canary.connections() == 1


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(LOOPBACK_V4, id="only 127.0.0.1 allowed"),
        pytest.param(
            DestinationPolicy(allow=(ip_network("127.0.0.0/8"),)),
            id="127.0.0.2 allowed too: only not following keeps it away",
        ),
    ],
)
def test_a_redirect_is_returned_not_followed(policy: DestinationPolicy) -> None:
    async def main(canary: Canary) -> None:
        client = make_http_client(policy)
        try:
            async with Receiver(reply(302, b"", location=canary.url)) as receiver:
                response = await client.post(receiver.url, json={"a": 1}, timeout=2.0)
            assert response.status_code == 302
            assert response.headers["location"] == canary.url
            assert response.is_redirect
        finally:
            await client.aclose()

    with Canary("127.0.0.2") as canary:
        run(main(canary))
        assert canary.connections() == 0


def test_a_followed_redirect_is_still_checked_at_each_hop() -> None:
    """Even a caller that asks httpx to follow gets no connection to a refused address."""

    async def main(canary: Canary) -> str | None:
        client = make_http_client(LOOPBACK_V4)
        try:
            async with Receiver(reply(302, b"", location=canary.url)) as receiver:
                with pytest.raises(httpx.ConnectError) as caught:
                    await client.get(receiver.url, follow_redirects=True, timeout=2.0)
            return refusal_reason(caught.value)
        finally:
            await client.aclose()

    with Canary("127.0.0.2") as canary:
        reason = run(main(canary))
        assert canary.connections() == 0
    assert reason is not None
    assert reason.startswith("127.0.0.2 is a loopback address")


def test_an_allowed_receiver_answers() -> None:
    async def main() -> None:
        client = make_http_client(LOOPBACK_V4)
        try:
            async with Receiver(reply(200, b"delivered")) as receiver:
                response = await client.post(
                    receiver.url + "hook?x=1",
                    content=b"{}",
                    headers={"content-type": "application/json"},
                    timeout=2.0,
                )
            assert response.status_code == 200
            assert response.text == "delivered"
            assert receiver.requests[0]["_line"] == "POST /hook?x=1 HTTP/1.1"
            assert receiver.requests[0]["content-type"] == "application/json"
        finally:
            await client.aclose()

    run(main())


def test_host_header_stays_the_hostname() -> None:
    async def main() -> None:
        client = make_http_client(LOCALHOST)
        try:
            async with Receiver(reply()) as receiver:
                response = await client.get(f"http://localhost:{receiver.port}/", timeout=2.0)
            assert response.status_code == 200
            assert receiver.requests[0]["host"] == f"localhost:{receiver.port}"
        finally:
            await client.aclose()

    run(main())


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for `localhost`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate with")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_tls_server_name_stays_the_hostname(tls_context: ssl.SSLContext) -> None:
    """The client sends SNI `localhost` to the address it resolved; the self-signed certificate
    then fails verification, as it should."""
    names: list[str | None] = []
    tls_context.sni_callback = lambda _sock, name, _context: names.append(name)

    async def main() -> BaseException:
        client = make_http_client(LOCALHOST)
        try:
            async with Receiver(reply(), ssl_context=tls_context) as receiver:
                with pytest.raises(httpx.ConnectError) as caught:
                    await client.get(f"https://localhost:{receiver.port}/", timeout=2.0)
            return caught.value
        finally:
            await client.aclose()

    error = run(main())
    assert names == ["localhost"]
    assert refusal_reason(error) is None
    assert "certificate" in str(error).lower()


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(never_answer, id="reads the request, never answers"),
        pytest.param(drip_headers, id="sends a header line every 0.1 s forever"),
        pytest.param(drip_body, id="sends a body byte every 0.1 s"),
    ],
)
@pytest.mark.parametrize("face", FACES)
def test_a_receiver_that_never_finishes_ends_at_the_timeout(respond: Respond, face: str) -> None:
    async def main() -> float:
        client = make_http_client(LOOPBACK_V4)
        try:
            async with Receiver(respond) as receiver:
                started = time.monotonic()
                with pytest.raises(httpx.TimeoutException):
                    await post(client, face, receiver.url, timeout=0.5)
                elapsed = time.monotonic() - started
            # the client is still good for the next request
            async with Receiver(reply()) as receiver:
                assert await post(client, face, receiver.url) == 200
            return elapsed
        finally:
            await client.aclose()

    elapsed = run(main())
    assert 0.4 <= elapsed < 2.0


# aiohttp warns that writing a body over 1 MiB at once may hold up the loop; here it must be
# large enough to fill the socket buffers.
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
def test_a_receiver_that_never_reads_a_large_body_ends_at_the_timeout() -> None:
    """aiohttp starts its read timeout once the body is written, and nothing bounds the
    write: only the client's own deadline ends this. The socket, its write buffer still
    full, stays open until the receiver resets it (asyncio closes a transport only once its
    buffer is flushed): closing the canary does, and then the client lets go of it."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("no /proc/self/fd to count open sockets with")

    def open_sockets() -> set[str]:
        sockets = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own fd is gone by now
                if (target := os.readlink(f"/proc/self/fd/{fd}")).startswith("socket:"):
                    sockets.add(target)
        return sockets

    async def main(canary: Canary) -> float:
        before = open_sockets()
        client = make_http_client(LOOPBACK_V4)
        try:
            started = time.monotonic()
            with pytest.raises(httpx.TimeoutException):
                await client.post(canary.url, content=b"x" * (64 << 20), timeout=0.5)
            elapsed = time.monotonic() - started
        finally:
            canary.close()
            await client.aclose()
        deadline = time.monotonic() + 5
        while not open_sockets() <= before:
            assert time.monotonic() < deadline, "the client kept its socket to a reset receiver"
            await asyncio.sleep(0.02)
        return elapsed

    with Canary(HOST) as canary:
        elapsed = run(main(canary))
    assert 0.4 <= elapsed < 2.5


async def hang_up(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closing: asyncio.Event
) -> None:
    """Close without a word."""


async def garbage(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closing: asyncio.Event
) -> None:
    writer.write(b"SMTP READY\r\n\r\n")
    await writer.drain()


@pytest.mark.parametrize(
    ("respond", "error"),
    [
        pytest.param(None, httpx.ConnectError, id="nothing listens: ConnectError, not a timeout"),
        pytest.param(hang_up, httpx.RemoteProtocolError, id="hangs up without a response"),
        pytest.param(garbage, httpx.RemoteProtocolError, id="answers something not HTTP"),
    ],
)
@pytest.mark.parametrize("face", FACES)
def test_aiohttp_errors_become_the_matching_httpx_errors(
    respond: Respond | None, error: type[httpx.HTTPError], face: str
) -> None:
    async def main() -> BaseException:
        client = make_http_client(LOOPBACK_V4)
        try:
            with pytest.raises(httpx.TransportError) as caught:
                if respond is None:
                    await post(client, face, f"http://{HOST}:{free_port()}/")
                else:
                    async with Receiver(respond) as receiver:
                        await post(client, face, receiver.url)
            return caught.value
        finally:
            await client.aclose()

    exc = run(main())
    assert type(exc) is error, repr(exc)
    assert refusal_reason(exc) is None


def test_no_cookie_crosses_from_one_request_to_the_next() -> None:
    async def main() -> None:
        client = make_http_client(LOOPBACK_V4)
        try:
            async with Receiver(reply(set_cookie="session=abc; Path=/")) as receiver:
                await client.get(receiver.url, timeout=2.0)
                await client.get(receiver.url, timeout=2.0)
            assert "cookie" not in receiver.requests[1]
            assert not client.cookies
        finally:
            await client.aclose()

    run(main())


def test_proxy_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main(proxy: Canary) -> None:
        client = make_http_client(LOOPBACK_V4)
        try:
            async with Receiver(reply()) as receiver:
                assert (await client.get(receiver.url, timeout=2.0)).status_code == 200
        finally:
            await client.aclose()

    with Canary(HOST) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        run(main(proxy))
        assert proxy.connections() == 0


def test_closing_the_client_closes_the_aiohttp_session() -> None:
    async def main() -> aiohttp.ClientSession:
        client = make_http_client(LOOPBACK_V4)
        async with Receiver(reply()) as receiver:
            await client.get(receiver.url, timeout=2.0)
        transport = client._transport  # type: ignore[attr-defined]
        assert isinstance(transport, GuardedTransport)
        session = transport.session
        assert isinstance(session, aiohttp.ClientSession)
        assert not session.closed
        await client.aclose()
        return session

    assert run(main()).closed


def test_a_client_never_used_closes_cleanly() -> None:
    async def main() -> None:
        await make_http_client(DEFAULT).aclose()

    run(main())


# The layers under the client, each on its own.


def test_the_aiohttp_session_alone_refuses_a_literal_at_the_socket(
    canaries: tuple[Canary, Canary | None],
) -> None:
    """Without the httpx wrapper aiohttp connects to an IP literal unresolved; the socket factory
    still refuses it."""

    async def main() -> BaseException:
        session = make_aiohttp_session(DEFAULT, SystemResolver())
        try:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await session.get(f"http://127.0.0.1:{canaries[0].port}/")
            return caught.value
        finally:
            await session.close()

    reason = refusal_reason(run(main()))
    assert reason is not None
    assert reason.startswith("127.0.0.1 is a loopback address")


def test_guarded_socket_checks_the_address_before_making_a_socket() -> None:
    with pytest.raises(DestinationRefused, match="loopback"):
        guarded_socket(DEFAULT, (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    with pytest.raises(DestinationRefused, match="IPv4-mapped"):
        guarded_socket(
            DEFAULT, (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:127.0.0.1", 80, 0, 0))
        )
    sock = guarded_socket(
        LOOPBACK_V4, (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))
    )
    sock.close()


class StubResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int) -> list[str]:
        return self.answers[host]


def test_policy_resolver_keeps_the_name_and_only_allowed_addresses() -> None:
    resolver = PolicyResolver(
        DEFAULT,
        StubResolver(
            {
                "mixed.example": [
                    "10.0.0.1",
                    "93.184.215.14",
                    "fd00::1",
                    "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                ],
                "private.example": ["10.0.0.1", "fd00::1"],
            }
        ),
    )

    results = run(resolver.resolve("mixed.example", 443, socket.AF_UNSPEC))
    assert [(r["hostname"], r["host"], r["port"], r["family"]) for r in results] == [
        ("mixed.example", "93.184.215.14", 443, socket.AF_INET),
        ("mixed.example", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", 443, socket.AF_INET6),
    ]
    with pytest.raises(DestinationRefused) as caught:
        run(resolver.resolve("private.example", 443, socket.AF_UNSPEC))
    assert "10.0.0.1 is a private address" in caught.value.reason
    assert "fd00::1 is a unique local" in caught.value.reason


def test_a_name_refused_through_the_client_keeps_its_reason() -> None:
    """The resolver path end to end: the stub answers a private address for a name, the client
    refuses before connecting, and the reason comes back through httpx and aiohttp."""

    async def main() -> BaseException:
        client = make_http_client(DEFAULT, resolver=StubResolver({"hook.example": ["127.0.0.1"]}))
        try:
            with pytest.raises(httpx.ConnectError) as caught:
                await client.get("http://hook.example:9/", timeout=2.0)
            return caught.value
        finally:
            await client.aclose()

    error = run(main())
    assert refusal_reason(error) == (
        "hook.example resolves only to refused addresses: 127.0.0.1 is a loopback address"
        " (set [delivery] allow_private_destinations or allow_cidrs to reach it)"
    )
    assert "127.0.0.1 is a loopback address" in str(error)


# The dispatcher's face of the same transport: `send`, no httpx request or response objects.


def transport(policy: DestinationPolicy) -> GuardedTransport:
    return make_http_transport(policy)


async def send(
    guarded: GuardedTransport,
    url: str,
    *,
    body: bytes = b"{}",
    timeout: float = 2.0,
    limit: int = 65536,
) -> Reply:
    return await guarded.send(
        "POST",
        url,
        (("content-type", "application/json"), ("user-agent", "Relayhook/test")),
        body,
        timeout=timeout,
        limit=limit,
    )


@pytest.mark.parametrize(("template", "words"), LOOPBACK_SPELLINGS)
def test_send_refuses_loopback_in_every_spelling_and_again_from_its_verdicts(
    canaries: tuple[Canary, Canary | None], template: str, words: str
) -> None:
    """The second send of a URL takes the kept verdict: refused the same way, still before
    any connection."""
    url = template.format(p=canaries[0].port)

    async def main() -> list[str | None]:
        guarded = transport(DEFAULT)
        reasons = []
        try:
            for _ in range(2):
                with pytest.raises(httpx.ConnectError) as caught:
                    await send(guarded, url)
                reasons.append(refusal_reason(caught.value))
        finally:
            await guarded.aclose()
        return reasons

    first, second = run(main())
    assert first is not None
    assert words in first
    assert second == first
    assert all(canary.connections() == 0 for canary in canaries if canary is not None)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        # refused by the destination check before httpx would not parse it (InvalidURL)
        pytest.param("http://0177.0.0.1:{p}/", httpx.ConnectError, id="not even a URL to httpx"),
        pytest.param("ftp://127.0.0.1:{p}/", httpx.ConnectError, id="not http"),
    ],
)
def test_send_refuses_what_cannot_be_sent(
    canaries: tuple[Canary, Canary | None], url: str, error: type[Exception]
) -> None:
    async def main() -> None:
        guarded = transport(LOCALHOST)
        try:
            with pytest.raises(error):
                await send(guarded, url.format(p=canaries[0].port))
        finally:
            await guarded.aclose()

    run(main())


def test_send_answers_status_headers_and_at_most_limit_bytes() -> None:
    async def main() -> None:
        guarded = transport(LOOPBACK_V4)
        try:
            async with Receiver(
                reply(429, b"x" * 100_000, Retry_After="3", X_Thing="caf\u00e9")
            ) as receiver:
                answer = await send(guarded, receiver.url + "hook?a=1", limit=1000)
            assert answer.status == 429
            assert answer.body == b"x" * 1000
            assert ("retry-after", "3") in answer.headers
            assert ("x-thing", "caf\u00e9") in answer.headers  # ISO-8859-1, as httpx decodes
            async with Receiver(reply(200, b"")) as receiver:
                assert await send(guarded, receiver.url) == Reply(
                    200, (("content-length", "0"), ("connection", "close")), b""
                )
        finally:
            await guarded.aclose()

    run(main())


def test_send_puts_the_request_on_the_wire_as_the_httpx_face_does() -> None:
    """What a receiver sees does not depend on which face sent it."""

    async def main() -> list[dict[str, str]]:
        guarded = transport(LOCALHOST)
        client = httpx.AsyncClient(transport=transport(LOCALHOST))
        try:
            async with Receiver(reply()) as receiver:
                url = f"http://localhost:{receiver.port}/hook?x=%20y"
                await send(guarded, url, body=b'{"a":1}')
                request = httpx.Request(
                    "POST",
                    url,
                    content=b'{"a":1}',
                    headers=[
                        ("content-type", "application/json"),
                        ("user-agent", "Relayhook/test"),
                    ],
                )
                await client.send(request)
            return receiver.requests
        finally:
            await guarded.aclose()
            await client.aclose()

    by_send, by_httpx = run(main())
    assert by_send == by_httpx
    assert by_send["_line"] == "POST /hook?x=%20y HTTP/1.1"
    assert by_send["content-length"] == "7"


def test_a_name_refused_through_send_keeps_its_reason() -> None:
    async def main() -> BaseException:
        guarded = make_http_transport(
            DEFAULT, resolver=StubResolver({"hook.example": ["127.0.0.1"]})
        )
        try:
            with pytest.raises(httpx.ConnectError) as caught:
                await send(guarded, "http://hook.example:9/")
            return caught.value
        finally:
            await guarded.aclose()

    reason = refusal_reason(run(main()))
    assert reason is not None
    assert reason.startswith("hook.example resolves only to refused addresses: 127.0.0.1")


def test_any_httpx_transport_is_a_sender() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == "application/json"
        assert request.extensions["timeout"]["read"] == 2.0
        return httpx.Response(201, headers=[("X-A", "1"), ("X-A", "2")], content=b"y" * 50)

    guarded = transport(DEFAULT)
    assert sender_for(guarded) is guarded
    mock = sender_for(httpx.MockTransport(handler))
    assert isinstance(mock, HttpxSender)
    answer = run(
        mock.send(
            "POST",
            "http://hook.example/",
            (("content-type", "application/json"),),
            b"{}",
            timeout=2.0,
            limit=10,
        )
    )
    assert answer.status == 201
    assert answer.body == b"y" * 10
    assert answer.headers[:2] == (("x-a", "1"), ("x-a", "2"))
