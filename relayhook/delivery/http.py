"""The one outbound HTTP client the dispatcher shares: httpx's API over aiohttp's connection pool.

    client = make_http_client(DestinationPolicy.from_config(allow_cidrs=["10.1.2.0/24"]))
    try:
        response = await client.request("POST", url, content=body, timeout=httpx.Timeout(10))
    except httpx.HTTPError as exc:
        refusal_reason(exc)   # "127.0.0.2 is a loopback address (...)", or None
    finally:
        await client.aclose()

Why aiohttp underneath: httpx's own transport (httpcore) scans and polls every pooled
connection on each request and sends 600-1,000 requests/s at 4-16 in flight on one core;
the same httpx API over `httpx-aiohttp` sends 2,200-2,800/s (issue 3, item 9).

The SSRF guard sits at three points, so the address checked is the address connected:
1. `GuardedTransport` refuses a non-HTTP scheme and checks a host that aiohttp would connect
   to without resolving (an IP literal, or all digits and dots such as `127.1`).
2. `PolicyResolver`, aiohttp's resolver, resolves a name once and hands aiohttp only the
   allowed addresses; aiohttp connects to those, and keeps the name for Host and TLS SNI.
3. `guarded_socket`, aiohttp's socket factory, checks the socket address of every connection
   attempt: a last line should a URL parser disagree (httpx vs. yarl) about the host.

A refusal reaches the caller as `httpx.ConnectError` whose cause chain holds the
`DestinationRefused`; `refusal_reason(exc)` returns its reason (None for any other error).
Redirects are never followed: httpx's `follow_redirects=False` and httpx-aiohttp's
`allow_redirects=False`; a caller that asks httpx to follow gets each hop checked anyway.

Errors: httpx-aiohttp 0.2 turns every aiohttp connection error (refused, reset, disconnected)
into `httpx.ConnectTimeout` and lets some aiohttp errors through unmapped; `GuardedTransport`
raises the httpx exception each one stands for (`_HTTPX_ERRORS`), chained to aiohttp's.

Timeouts: httpx-aiohttp maps a request's httpx timeout to aiohttp's `ClientTimeout(
sock_connect=connect, sock_read=read, connect=pool)`, ignores `write` and sets no total.
aiohttp starts `sock_read` once the body is sent and restarts it on every chunk received, so a
receiver that never answers ends at `read`, but one that trickles a byte per interval, or never
reads a large body, would never end. `GuardedTransport` therefore also enforces a deadline on
the whole exchange, response body included: the largest of the request's timeout values, so
`httpx.Timeout(10)` means "done, or `httpx.TimeoutException`, within 10 s". `timeout=None`
means no bound at all.

Known limit: when a receiver stops reading a body larger than the socket buffers, the
connection stays open after the timeout until the receiver reads or resets it (asyncio closes
a transport only once its write buffer is flushed, and aiohttp closes rather than aborts).
Keep bodies small; aiohttp also warns (ResourceWarning) about bodies over 1 MiB.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from functools import partial
from http.cookiejar import CookieJar, DefaultCookiePolicy
from ssl import SSLContext
from typing import NoReturn

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from relayhook.ssrf import (
    DestinationPolicy,
    DestinationRefused,
    Resolver,
    SystemResolver,
    check_host,
    looks_like_ip,
    refusal_reason,
)

__all__ = [
    "GuardedTransport",
    "PolicyResolver",
    "guarded_socket",
    "make_aiohttp_session",
    "make_http_client",
    "refusal_reason",
]


def make_http_transport(
    policy: DestinationPolicy, *, resolver: Resolver | None = None, max_connections: int = 100
) -> GuardedTransport:
    """The guarded httpx transport over aiohttp. The dispatcher sends through it directly:
    it needs nothing of what `AsyncClient.send` adds (redirects, auth, cookies), and skipping
    that layer is a fifth more deliveries per second (bench/README.md)."""
    resolver = resolver if resolver is not None else SystemResolver()
    ssl_context = httpx.create_ssl_context(trust_env=False)
    aiohttp_transport = AiohttpTransport(
        verify=ssl_context,
        trust_env=False,
        client=partial(make_aiohttp_session, policy, resolver, ssl_context, max_connections),
    )
    return GuardedTransport(aiohttp_transport, policy, resolver)


def make_http_client(
    policy: DestinationPolicy, *, resolver: Resolver | None = None, max_connections: int = 100
) -> httpx.AsyncClient:
    """A client over that transport (for `relayhook send-test`): redirects not followed, no
    proxy or CA settings from the environment, no cookies kept between requests, every
    destination checked by `policy`. `max_connections` bounds open connections (0: none)."""
    return httpx.AsyncClient(
        transport=make_http_transport(policy, resolver=resolver, max_connections=max_connections),
        follow_redirects=False,
        trust_env=False,
        # One client serves every hook: a cookie one receiver sets must not reach the next.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


def make_aiohttp_session(
    policy: DestinationPolicy,
    resolver: Resolver,
    ssl_context: SSLContext | bool = True,
    max_connections: int = 100,
) -> aiohttp.ClientSession:
    """An aiohttp session whose connector resolves through `policy` and checks every socket
    address it connects to. Call it inside the running loop (httpx-aiohttp does, lazily)."""
    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(policy, resolver),
        socket_factory=partial(guarded_socket, policy),
        ssl=ssl_context,
        limit=max_connections,
    )
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
    )


class PolicyResolver(AbstractResolver):
    """aiohttp's resolver: resolve once through `resolver`, return only allowed addresses
    (DestinationRefused when none is). aiohttp caches the answer (10 s) and keeps `host` as
    the Host header and TLS server name."""

    def __init__(self, policy: DestinationPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        reason = self._policy.check_name(host)  # never ask a resolver about `localhost.`
        if reason is not None:
            raise DestinationRefused(reason)
        addresses = self._policy.filter(host, await self._resolver.resolve(host, port))
        results: list[ResolveResult] = []
        for address in addresses:
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                ResolveResult(
                    hostname=host, host=address, port=port, family=address_family,
                    proto=0, flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise DestinationRefused(f"{host} has no allowed address of family {family!r}")
        return results

    async def close(self) -> None:
        pass


def guarded_socket(policy: DestinationPolicy, addr_info: aiohttp.AddrInfoType) -> socket.socket:
    """aiohttp's socket factory: a socket for `addr_info`, if its address is allowed."""
    family, type_, proto, _, sockaddr = addr_info
    reason = policy.check(str(sockaddr[0]))
    if reason is not None:
        raise DestinationRefused(reason)
    return socket.socket(family=family, type=type_, proto=proto)


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks what aiohttp would not (scheme, IP-literal hosts), bounds the whole exchange by
    the request's timeout, and raises httpx's exception for each aiohttp error, then hands the
    request to `transport`."""

    def __init__(
        self, transport: httpx.AsyncBaseTransport, policy: DestinationPolicy, resolver: Resolver
    ) -> None:
        self._transport = transport
        self._policy = policy
        self._resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = _deadline(request)
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                await self._check(request)
                response = await self._transport.handle_async_request(request)
        except Exception as exc:
            _reraise(exc, request, timeout)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _GuardedStream(response.stream, deadline, request)
        return response

    async def _check(self, request: httpx.Request) -> None:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            if url.scheme not in ("http", "https"):
                raise DestinationRefused(f"{url}: only http and https URLs are allowed")
            # aiohttp connects to the host yarl parses from str(url): check that one too.
            for host in dict.fromkeys((url.host, yarl.URL(str(url)).raw_host or "")):
                reason = self._policy.check_name(host)
                if reason is not None:
                    raise DestinationRefused(reason)
                if looks_like_ip(host):
                    await check_host(host, port, self._policy, self._resolver)
        except OSError as exc:  # DestinationRefused, or a numeric host that does not resolve
            raise httpx.ConnectError(str(exc), request=request) from exc

    async def aclose(self) -> None:
        await self._transport.aclose()


class _GuardedStream(httpx.AsyncByteStream):
    """A response body that must arrive by `deadline` (loop time; None: no deadline)."""

    def __init__(
        self, stream: httpx.AsyncByteStream, deadline: float | None, request: httpx.Request
    ) -> None:
        self._stream = stream
        self._deadline = deadline
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._stream.__aiter__()
        while True:
            timeout = asyncio.timeout_at(self._deadline)
            try:
                async with timeout:
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except Exception as exc:
                _reraise(exc, self._request, timeout)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


def _total_timeout(request: httpx.Request) -> float | None:
    """The largest of the request's connect/read/write/pool timeouts; None if none is set."""
    values = [float(v) for v in request.extensions.get("timeout", {}).values() if v is not None]
    return max(values) if values else None


def _deadline(request: httpx.Request) -> float | None:
    """Loop time by which the exchange must be done."""
    total = _total_timeout(request)
    return None if total is None else asyncio.get_running_loop().time() + total


# httpx-aiohttp 0.2 maps every aiohttp.ClientConnectionError (refused, reset, disconnected)
# to httpx.ConnectTimeout and lets other aiohttp errors through unmapped. First match wins.
_HTTPX_ERRORS: tuple[tuple[type[aiohttp.ClientError], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
)


def _reraise(exc: Exception, request: httpx.Request, timeout: asyncio.Timeout) -> NoReturn:
    """Raise `exc` as the httpx exception it stands for, chained to the aiohttp one."""
    if isinstance(exc, TimeoutError) and timeout.expired():
        message = f"{request.method} {request.url}: not done within {_total_timeout(request)} s"
        raise httpx.TimeoutException(message, request=request) from exc
    cause = exc if isinstance(exc, aiohttp.ClientError) else exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        target = next(target for source, target in _HTTPX_ERRORS if isinstance(cause, source))
        if type(exc) is not target:
            raise target(str(exc), request=request) from cause
    raise exc
