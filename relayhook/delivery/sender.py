"""The seam between the dispatcher and the network: `Sender.send` makes one exchange and hands
back at most `limit` bytes of the answer, or raises the httpx exception the failure stands for.

    reply = await sender.send("POST", url, headers, body, timeout=10.0, limit=65536)
    reply.status, reply.headers, reply.body

`relayhook.delivery.http.GuardedTransport` is the one `relayhook serve` uses (straight over
aiohttp, no httpx objects per delivery); `HttpxSender` makes any httpx transport one (the
tests' `httpx.MockTransport`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import httpx

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Headers  # names in lower case, as httpx's `Headers.multi_items()` gives them
    body: bytes  # at most the `limit` asked for


@runtime_checkable
class Sender(Protocol):
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
        """One exchange, done within `timeout` seconds (body included) or
        `httpx.TimeoutException`; `httpx.InvalidURL` for a URL that cannot be sent; any other
        failure as an `httpx.TransportError` (a refused destination: `refusal_reason`)."""


def sender_for(transport: httpx.AsyncBaseTransport) -> Sender:
    """`transport` itself if it is a Sender, else it wrapped in one."""
    return transport if isinstance(transport, Sender) else HttpxSender(transport)


@dataclass(frozen=True, slots=True)
class HttpxSender:
    """Any httpx transport as a Sender, bounded one second above its own timeout (a mock may
    ignore it)."""

    transport: httpx.AsyncBaseTransport

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
        request = httpx.Request(
            method,
            url,
            headers=list(headers),
            content=body or None,
            extensions={"timeout": httpx.Timeout(timeout).as_dict()},
        )
        async with asyncio.timeout(timeout + 1):
            response = await self.transport.handle_async_request(request)
            try:
                content = await read_some(response, limit)
            finally:
                await response.aclose()
        return Reply(response.status_code, tuple(response.headers.multi_items()), content)


async def read_some(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of the body: a receiver cannot make us hold more."""
    if response.is_stream_consumed:  # a transport that read the body already
        return response.content[:limit]
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)
