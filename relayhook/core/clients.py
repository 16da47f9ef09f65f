"""Who is asking: the client's address, from a proxy's `X-Forwarded-For` only when told.

    proxies = TrustedProxies.from_config(settings.server.forwarded_allow_ips)
    proxies.client_of(scope)   # "203.0.113.9": the socket peer, or what a trusted proxy says
    address_key("2001:db8:1:2::7")   # "2001:db8:1:2::/64": what a throttle counts by

`[server] forwarded_allow_ips` lists the proxies (addresses or networks; `*` for any peer) whose
`X-Forwarded-For` is believed. Empty (the default): the header is ignored and the socket peer is
the client, whoever sent it. Behind trusted proxies the list is read from the right (the hop
nearest us) and the first address that is not a trusted proxy is the client: an address a
client wrote at the left end of the header itself is never reached past a proxy that appended
the real one. `relayhook serve` hands uvicorn the same list (its own default trusts 127.0.0.1),
so its access log shows the same client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any

from relayhook.core.ssrf import IPNetwork, parse_ip

UNKNOWN = "unknown"


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()
    everyone: bool = False

    @classmethod
    def from_config(cls, values: Iterable[str]) -> TrustedProxies:
        """ValueError naming the entry that is neither an address nor a network."""
        networks: list[IPNetwork] = []
        everyone = False
        for value in values:
            if value.strip() == "*":
                everyone = True
                continue
            try:
                networks.append(ip_network(value.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an IP address or network (write 10.0.0.2, "
                    "10.0.0.0/24, ::1 or *)"
                ) from None
        return cls(tuple(networks), everyone)

    def trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        if not self.networks:
            return False
        try:
            address = parse_ip(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client_of(self, scope: Mapping[str, Any]) -> str:
        """The client's address: the socket peer, or, when the peer is a trusted proxy, the
        nearest address in `X-Forwarded-For` that is not one."""
        peer = scope.get("client")
        host = str(peer[0]) if peer else UNKNOWN
        if not self.trusts(host):
            return host
        hops = [
            hop.strip()
            for name, value in scope.get("headers", ())
            if name == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
        ]
        for hop in reversed(hops):
            try:
                address = str(ip_address(hop.strip("[]")))
            except ValueError:
                return host  # a hop we cannot read: the nearest proxy we know of answers for it
            if not self.trusts(address):
                return address
            host = address
        return host


def address_key(address: str) -> str:
    """What a throttle counts an address by: an IPv4 address itself, an IPv6 address's /64
    (one subscriber's usual share: counting single IPv6 addresses would give an attacker
    2^64 tries)."""
    try:
        parsed = parse_ip(address)
    except ValueError:
        return address
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is None:
        return str(ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
