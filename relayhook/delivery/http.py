"""The one outbound HTTP client the dispatcher shares: aiohttp's connection pool, guarded, seen
through httpx's transport API (for `relayhook send-test` and alerts) and through the dispatcher's
`Sender` (relayhook.delivery.sender: no httpx objects per delivery).

    client = make_http_client(DestinationPolicy.from_config(allow_cidrs=["10.1.2.0/24"]))
    try:
        response = await client.request("POST", url, content=body, timeout=httpx.Timeout(10))
    except httpx.HTTPError as exc:
        refusal_reason(exc)   # "127.0.0.2 is a loopback address (...)", or None
    finally:
        await client.aclose()

Why aiohttp underneath: httpx's own transport (httpcore) scans and polls every pooled
connection on each request and sends 600-1,000 requests/s at 4-16 in flight on one core;
aiohttp sends 2,200-2,800/s under httpx's API (issue 3, item 9), and the dispatcher, calling
it without httpx's request and response objects, twice that (issue 12).

The SSRF guard sits at three points, so the address checked is the address connected:
1. `GuardedTransport` puts the URL through `check_destination`, the check a hook's URL gets
   when it is saved: a non-HTTP scheme, URL parsers that disagree (urllib, yarl, httpx), a name
   internal by definition and an IP literal are refused before aiohttp sees the URL. The policy
   is immutable, so the verdict is kept per URL text.
2. `PolicyResolver`, aiohttp's resolver, resolves a name once and hands aiohttp only the
   allowed addresses; aiohttp connects to those, and keeps the name for Host and TLS SNI.
3. `guarded_socket`, aiohttp's socket factory, checks the socket address of every connection
   attempt: a last line should a URL parser disagree (httpx vs. yarl) about the host.

A refusal reaches the caller as `httpx.ConnectError` whose cause chain holds the
`DestinationRefused`; `refusal_reason(exc)` returns its reason (None for any other error).
Redirects are never followed: aiohttp is asked with `allow_redirects=False`; a caller that asks
httpx to follow gets each hop checked anyway. Each aiohttp error is raised as the httpx
exception it stands for (`_HTTPX_ERRORS`), chained to aiohttp's.

Timeouts: one deadline per exchange, aiohttp's `total`, over everything from the pool wait to
the last byte of the response body: the largest of the request's httpx timeout values, so
`httpx.Timeout(10)` means "done, or `httpx.TimeoutException`, within 10 s", even against a
receiver that trickles a byte per interval or never reads a large body (aiohttp's `sock_read`
alone restarts on every chunk). `timeout=None` means no bound at all.

Known limit: when a receiver stops reading a body larger than the socket buffers, the
connection stays open after the timeout until the receiver reads or resets it (asyncio closes
a transport only once its write buffer is flushed, and aiohttp closes rather than aborts).
Keep bodies small; aiohttp also warns (ResourceWarning) about bodies over 1 MiB.
"""

from __future__ import annotations

import functools
import math
import socket
from collections.abc import AsyncIterator, Sequence
from functools import partial
from http.cookiejar import CookieJar, DefaultCookiePolicy
from ssl import SSLContext
from typing import NoReturn

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from relayhook.core.ssrf import (
    DestinationPolicy,
    DestinationRefused,
    Resolver,
    refusal_reason,
)
from relayhook.delivery.destinations import SystemResolver, check_destination
from relayhook.delivery.sender import Reply

__all__ = [
    "GuardedTransport",
    "PolicyResolver",
    "guarded_socket",
    "make_aiohttp_session",
    "make_http_client",
    "make_http_transport",
    "refusal_reason",
]

MAX_TARGETS = 4096  # verdicts kept per transport (one per distinct URL text); then begun anew


def make_http_transport(
    policy: DestinationPolicy, *, resolver: Resolver | None = None, max_connections: int = 100
) -> GuardedTransport:
    """The guarded transport over aiohttp: an httpx transport, and the dispatcher's Sender."""
    return GuardedTransport(
        policy,
        resolver if resolver is not None else SystemResolver(),
        max_connections=max_connections,
    )


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
    address it connects to. Call it inside the running loop (GuardedTransport does, lazily)."""
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
                    hostname=host,
                    host=address,
                    port=port,
                    family=address_family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
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
    """One aiohttp session (made in the running loop at first use) behind two faces:
    `handle_async_request` (httpx's transport API) and `send` (the dispatcher's Sender). Both
    check what aiohttp would not (scheme, IP-literal hosts), bound the whole exchange by one
    deadline, and raise httpx's exception for each aiohttp error."""

    def __init__(
        self,
        policy: DestinationPolicy,
        resolver: Resolver,
        *,
        max_connections: int = 100,
        ssl_context: SSLContext | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # URL text -> where aiohttp is to connect, or the reason it may not (never an error
        # of the moment such as a failed lookup: those are not kept).
        self._targets: dict[str, yarl.URL | str] = {}
        self._judged_with = policy.extra

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = make_aiohttp_session(
                self._policy, self._resolver, self._ssl_context, self._max_connections
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        timeout: float,
        limit: int,
    ) -> Reply:
        target = await self._target(url, None)
        try:
            response = await self.session.request(
                method,
                target,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                auto_decompress=False,
                timeout=_client_timeout(timeout, None, None, None),
            )
            try:
                content = await _read_some(response.content, limit)
            finally:
                response.release()  # a body left unread closes the connection
        except Exception as exc:
            _reraise(exc, method, url, timeout)
        return Reply(response.status, _decoded(response.raw_headers), content)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        target = await self._target(url, request)
        timeouts = request.extensions.get("timeout", {})
        total = _total_timeout(timeouts)
        data: bytes | httpx.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:  # a streamed body
            assert isinstance(request.stream, httpx.AsyncByteStream)
            data = request.stream
            request.headers.pop("transfer-encoding", None)  # aiohttp writes its own
        timeout = _client_timeout(
            total, timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool")
        )
        try:
            response = await self.session.request(
                request.method,
                target,
                headers=request.headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                timeout=timeout,
            )
        except Exception as exc:
            _reraise(exc, request.method, url, total)
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, request.method, url, total),
            request=request,
            extensions=extensions,
        )

    async def _target(self, url: str, request: httpx.Request | None) -> yarl.URL:
        """The URL aiohttp is to connect to, once its host has passed the policy."""
        if self._policy.extra is not self._judged_with:  # widened at run time: judge again
            self._targets.clear()
            self._judged_with = self._policy.extra
        target = self._targets.get(url)
        if target is None:
            target = await self._check(url, request)
            if len(self._targets) >= MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = target
        if isinstance(target, str):
            refused = DestinationRefused(target)
            raise httpx.ConnectError(str(refused), request=request) from refused
        return target

    async def _check(self, url: str, request: httpx.Request | None) -> yarl.URL | str:
        """Where to connect for `url`, or the reason it is refused: the URL as written and as
        httpx wrote it again go through the destination check a hook's URL gets when it is
        saved (without a resolver: `PolicyResolver` checks the addresses of a name)."""
        try:
            await check_destination(url, self._policy)
            parsed = request.url if request is not None else httpx.URL(url)
            if str(parsed) != url:
                await check_destination(str(parsed), self._policy)
        except DestinationRefused as exc:
            return exc.reason
        # aiohttp connects to the host yarl parses from str(parsed): checked just now.
        return yarl.URL(str(parsed))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _ResponseStream(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it (aiohttp's deadline bounds every read)."""

    def __init__(
        self, response: aiohttp.ClientResponse, method: str, url: str, total: float | None
    ) -> None:
        self._response = response
        self._what = (method, url, total)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(64 * 1024):
                yield chunk
        except Exception as exc:
            _reraise(exc, *self._what)

    async def aclose(self) -> None:
        self._response.release()


async def _read_some(content: aiohttp.StreamReader, limit: int) -> bytes:
    """At most `limit` bytes of the body: a receiver cannot make us hold more."""
    chunks: list[bytes] = []
    size = 0
    while size < limit and not content.at_eof():
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _decoded(raw: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    """Response headers as httpx's `Headers.multi_items()` has them: names in lower case, all
    decoded as ASCII, else UTF-8, else ISO-8859-1."""
    for encoding in ("ascii", "utf-8"):
        try:
            return tuple((k.lower().decode(encoding), v.decode(encoding)) for k, v in raw)
        except UnicodeDecodeError:
            continue
    return tuple((k.lower().decode("iso-8859-1"), v.decode("iso-8859-1")) for k, v in raw)


def _total_timeout(timeouts: dict[str, float | None]) -> float | None:
    """The largest of an httpx request's connect/read/write/pool timeouts; None if none is set."""
    values = [float(v) for v in timeouts.values() if v is not None]
    return max(values) if values else None


@functools.lru_cache(maxsize=64)
def _client_timeout(
    total: float | None, connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for an exchange: `total` the deadline (exact, never rounded up to a
    whole second as aiohttp does from 5 s on)."""
    return aiohttp.ClientTimeout(
        total=total, connect=pool, sock_connect=connect, sock_read=read, ceil_threshold=math.inf
    )


# First match wins.
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


def _reraise(exc: Exception, method: str, url: str, total: float | None) -> NoReturn:
    """Raise `exc` as the httpx exception it stands for, chained to the aiohttp one."""
    if isinstance(exc, aiohttp.ClientError):
        target = next(target for source, target in _HTTPX_ERRORS if isinstance(exc, source))
        raise target(str(exc)) from exc
    if isinstance(exc, TimeoutError):  # the deadline, while the body was read
        raise httpx.TimeoutException(f"{method} {url}: not done within {total} s") from exc
    raise exc
