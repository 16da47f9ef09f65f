"""The one destination check: where a hook's URL may lead, asked when a hook is saved (the config
file, the API, the console: all through `check_destination`) and when each request is sent
(`relayhook.delivery.http`, the same function without a resolver: the addresses are then
checked at the socket the request connects from).

    addresses = await check_destination("https://hooks.zapier.com/...", policy, SystemResolver())
    await check_destination("http://127.0.0.1:8645\\\\@127.0.0.5:8646/", policy)
    # DestinationRefused: "... the URL parsers disagree on its host: urllib reads 127.0.0.5:8646,
    #                      yarl cannot read it (...)"

At save time a name is resolved with the injected resolver and refused if ANY of its addresses
is refused (a name with one public and one loopback record is refused, with the reason); at send
time `PolicyResolver` hands aiohttp only the allowed ones, and the socket factory checks each.
The rules themselves (ranges, names, forms) are the pure `relayhook.core.ssrf`; the resolver, the
socket and the URL parsers the transports use live here.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import httpx
import yarl

from relayhook.core.ssrf import (
    DestinationPolicy,
    DestinationRefused,
    Resolver,
    check_url_text,
    normal_name,
    parse_ip,
)

__all__ = ["SystemResolver", "check_destination", "destination_of"]


class SystemResolver:
    """The system's resolver (`getaddrinfo`). It also turns numeric forms such as `127.1`,
    `0x7f000001` and `2130706433` into 127.0.0.1: the policy then sees the real address."""

    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[str] = []
        for family, _, _, _, sockaddr in infos:
            address = str(sockaddr[0])
            if family == socket.AF_INET6 and len(sockaddr) == 4 and sockaddr[3]:
                address = f"{address.split('%', 1)[0]}%{sockaddr[3]}"  # keep the zone
            if address not in addresses:
                addresses.append(address)
        return addresses


def _same_host(host: str) -> str:
    """A host as the parsers' answers are compared: an IP address in its canonical text (yarl
    writes ::ffff:127.0.0.1 as ::ffff:7f00:1), a name in lower case without trailing dots."""
    bare = host.strip("[]")
    try:
        return str(parse_ip(bare))
    except ValueError:
        return bare.lower().rstrip(".")


def _readings(url: str) -> dict[str, tuple[str, str, int] | str]:
    """(scheme, host, port) as urllib, yarl (what aiohttp connects to) and httpx each read
    `url`, or why one cannot read it."""
    readings: dict[str, tuple[str, str, int] | str] = {}
    default = {"http": 80, "https": 443}
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        readings["urllib"] = (
            scheme,
            _same_host(parts.hostname or ""),
            parts.port or default.get(scheme, 0),
        )
    except ValueError as exc:
        readings["urllib"] = str(exc)
    try:
        target = yarl.URL(url)
        readings["yarl"] = (
            target.scheme,
            _same_host(target.raw_host or ""),
            target.explicit_port or default.get(target.scheme, 0),
        )
    except (ValueError, UnicodeError, TypeError) as exc:
        readings["yarl"] = str(exc)
    try:
        client = httpx.URL(url)
        readings["httpx"] = (
            client.scheme,
            _same_host(client.raw_host.decode("ascii")),
            client.port or default.get(client.scheme, 0),
        )
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        readings["httpx"] = str(exc)
    return readings


def destination_of(url: str, policy: DestinationPolicy) -> tuple[str, int]:
    """(host, port) of `url`, once every URL parser on the way reads the same scheme, host and
    port in it; DestinationRefused with the reason otherwise (a space or control character, a
    scheme other than http(s), no host, a host `policy.check_name` refuses, or parsers that
    disagree: `\\@`, a bad `xn--` label)."""
    unsafe = check_url_text(url)
    if unsafe is not None:
        raise DestinationRefused(f"{url!r} {unsafe}")
    readings = _readings(url)
    first = readings["urllib"]
    if isinstance(first, str):
        raise DestinationRefused(f"{url!r} is not a valid URL ({first})")
    scheme, host, port = first
    if scheme not in ("http", "https"):
        raise DestinationRefused(f"{url!r}: only http and https URLs are allowed")
    if not host:
        raise DestinationRefused(f"{url!r} has no host")
    written = urlsplit(url).hostname or host  # as written (`localhost.`), for the reasons
    reason = policy.check_name(written)
    if reason is not None:
        raise DestinationRefused(reason)
    if any(reading != first for reading in readings.values()):
        said = "; ".join(
            f"{parser} cannot read it ({reading})"
            if isinstance(reading, str)
            else f"{parser} reads {reading[1]}:{reading[2]}"
            for parser, reading in readings.items()
        )
        raise DestinationRefused(
            f"{url!r}: the URL parsers disagree on where it leads ({said});"
            " write it plainly (no backslash, no odd host name)"
        )
    return written, port


async def check_destination(
    url: str, policy: DestinationPolicy, resolver: Resolver | None = None
) -> list[str]:
    """The addresses a request to `url` may connect to, or DestinationRefused with the reason.
    The host must pass `policy.check_name` (names internal by definition, metadata names,
    unusual address forms) and an IP literal `policy.check`. With a `resolver` (at save time)
    a name is resolved and refused if any of its addresses is; a resolver failure (OSError)
    propagates: the caller decides whether a name that does not resolve now may wait for the
    send. Without one (at send time) a name is returned as `[host]`, for the connector's
    resolver to check address by address."""
    host, port = destination_of(url, policy)
    name = normal_name(host) or host
    try:
        literal = parse_ip(name)
    except ValueError:
        literal = None
    if literal is not None:
        reason = policy.check(literal)
        if reason is not None:
            raise DestinationRefused(reason)
        return [str(literal)]
    if resolver is None:
        return [host]
    addresses = await resolver.resolve(host, port)
    refused = [reason for address in addresses if (reason := policy.check(address)) is not None]
    if not addresses:
        raise DestinationRefused(f"{host} resolves to no address")
    if refused:
        raise DestinationRefused(f"{host} resolves to a refused address: {'; '.join(refused)}")
    return addresses
