"""The SSRF guard: which destination addresses a hook may reach.

    policy = DestinationPolicy()                  # the default: public addresses only
    policy.check("10.0.0.1")                      # "10.0.0.1 is a private address (set ...)"
    policy.check_name("localhost.")               # "localhost. is a loopback name (...)"

The ranges are an explicit table, not `ipaddress`' `is_private`/`is_global` (they have had wrong
ranges). IPv4-mapped, NAT64 and 6to4 addresses are judged by the IPv4 address they embed.
Pure: no resolver and no socket here. The one destination check a URL goes through when a hook
is saved (config file, API, console) and when it is sent is
`relayhook.delivery.destinations.check_destination`, over these rules; at send time
`relayhook.delivery.http` also applies the policy to the address it actually connects to.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Protocol

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_PRIVATE = "a private address"
_DOCUMENTATION = "a documentation address"

# Longest prefix wins, so ::1 is "loopback" rather than "IPv4-compatible".
BLOCKED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ip_network(cidr), label)
    for cidr, label in (
        ("0.0.0.0/8", "a 'this network' address, where 0.0.0.0 reaches this host"),
        ("10.0.0.0/8", _PRIVATE),
        ("100.64.0.0/10", "a CGNAT (shared) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local (cloud metadata) address"),
        ("172.16.0.0/12", _PRIVATE),
        ("192.0.0.0/24", "a reserved IETF protocol address"),
        ("192.0.2.0/24", _DOCUMENTATION),
        ("192.88.99.0/24", "a reserved 6to4 relay anycast address"),
        ("192.168.0.0/16", _PRIVATE),
        ("198.18.0.0/15", "a reserved benchmarking address"),
        ("198.51.100.0/24", _DOCUMENTATION),
        ("203.0.113.0/24", _DOCUMENTATION),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved or broadcast address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "a reserved (deprecated IPv4-compatible) address"),
        ("64:ff9b:1::/48", "a reserved local-use NAT64 address"),
        ("100::/64", "a reserved discard-only address"),
        ("2001::/23", "a reserved IETF protocol address"),
        ("2001::/32", "a reserved Teredo address"),
        ("2001:db8::/32", _DOCUMENTATION),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a reserved (deprecated site-local) address"),
        ("ff00::/8", "a multicast address"),
        # Everything outside 2000::/3 (global unicast) is unassigned or special-purpose.
        ("::/3", "a reserved address outside global unicast 2000::/3"),
        ("4000::/2", "a reserved address outside global unicast 2000::/3"),
        ("8000::/1", "a reserved address outside global unicast 2000::/3"),
    )
)

# Refused even with allow_private_destinations; only an allow_cidrs entry reaches them.
METADATA: dict[IPAddress, str] = {
    ip_address(address): label
    for address, label in (
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.170.2", "the AWS ECS credentials (cloud metadata) address"),
        ("169.254.170.23", "the AWS EKS pod identity (cloud metadata) address"),
        ("fd00:ec2::254", "AWS's IPv6 cloud metadata address"),
        ("fd00:ec2::23", "the AWS EKS pod identity (cloud metadata) IPv6 address"),
        ("100.100.100.200", "Alibaba Cloud's cloud metadata address"),
        ("168.63.129.16", "Azure's WireServer (cloud metadata) address"),
    )
}


def _last_32_bits(address: IPv6Address) -> IPv4Address:
    return IPv4Address(int(address) & 0xFFFFFFFF)


def _sixtofour(address: IPv6Address) -> IPv4Address:
    return IPv4Address((int(address) >> 80) & 0xFFFFFFFF)


# IPv6 forms that carry an IPv4 address the packets end up at: judged by that address.
EMBEDDING: tuple[tuple[IPv6Network, str, Callable[[IPv6Address], IPv4Address]], ...] = (
    (IPv6Network("::ffff:0:0/96"), "IPv4-mapped", _last_32_bits),
    (IPv6Network("64:ff9b::/96"), "NAT64", _last_32_bits),
    (IPv6Network("2002::/16"), "6to4", _sixtofour),
)

_HINT = "set [delivery] allow_private_destinations or allow_cidrs to reach it"
_METADATA_HINT = "only [delivery] allow_cidrs can reach it"
_METADATA_NAME_HINT = "write its address and allow it with [delivery] allow_cidrs"
_NAME_HINT = (
    "write the address and allow it with [delivery] allow_cidrs, or set allow_private_destinations"
)

# Names that lead to this host, a private network or a cloud's metadata service by definition,
# refused without asking a resolver (which may not know them at check time, and would then let
# them through until the first send). Matched on the lower-case name without trailing dots.
INTERNAL_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("localhost", "a loopback name (RFC 6761)"),
    ("internal", "a private-network name (.internal is reserved for those)"),
    ("local", "a link-local multicast DNS name (RFC 6762)"),
    ("home.arpa", "a home-network name (RFC 8375)"),
)
METADATA_NAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# WHATWG's URL parser reads a host whose last label is a number as IPv4 (`0x7f.1`, `127.1`,
# `2130706433`, `127.000.000.001`); other parsers and resolvers read some of them differently.
_NUMBER_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
UNSAFE_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


class DestinationRefused(OSError):
    """A destination the policy refuses. An OSError, so aiohttp's connector wraps it (as a
    connection error) instead of crashing; `reason` says which address and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[type[DestinationRefused], tuple[str]]:
        return (type(self), (self.reason,))


def parse_ip(value: str | IPAddress) -> IPAddress:
    """An address from its canonical text; an IPv6 zone (`fe80::1%eth0`) is dropped."""
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    return ip_address(value.split("%", 1)[0] if ":" in value else value)


def embedded_ipv4(address: IPAddress) -> tuple[str, IPv4Address] | None:
    """(form, IPv4 address) when `address` is an IPv4-mapped, NAT64 or 6to4 address."""
    if isinstance(address, IPv6Address):
        for network, form, extract in EMBEDDING:
            if address in network:
                return form, extract(address)
    return None


def _show(address: IPAddress) -> str:
    """Python 3.11 prints ::ffff:127.0.0.1 as ::ffff:7f00:1; show the form people write."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def blocked_range(address: IPAddress) -> tuple[IPNetwork, str] | None:
    """The most specific blocked range holding `address`, with its label; None if public."""
    found: tuple[IPNetwork, str] | None = None
    for network, label in BLOCKED:
        if address in network and (found is None or network.prefixlen > found[0].prefixlen):
            found = (network, label)
    return found


def parse_cidrs(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`[delivery] allow_cidrs` as networks; ValueError naming the bad entry."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ip_network(value.strip()))
        except ValueError as exc:
            raise ValueError(f"allow_cidrs: {value!r} is not a network ({exc})") from None
    return tuple(networks)


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses hooks may reach. `allow` networks always pass; `allow_private` lets
    everything through except cloud metadata addresses."""

    allow_private: bool = False
    allow: tuple[IPNetwork, ...] = ()
    # Networks allowed at run time (the console's Settings), beside the config's `allow`.
    extra: tuple[IPNetwork, ...] = field(default=(), compare=False)

    def widen(self, cidrs: Iterable[str]) -> None:
        """Allow these networks too, from now on, in every holder of this policy (the
        sender's resolver, socket factory and transport). ValueError naming a bad entry."""
        object.__setattr__(self, "extra", parse_cidrs(cidrs))

    @classmethod
    def from_config(
        cls, *, allow_private_destinations: bool = False, allow_cidrs: Iterable[str] = ()
    ) -> DestinationPolicy:
        return cls(allow_private=allow_private_destinations, allow=parse_cidrs(allow_cidrs))

    def check(self, ip: str | IPAddress) -> str | None:
        """None if a hook may connect to `ip`, else the reason it may not."""
        try:
            address = parse_ip(ip)
        except ValueError:
            return f"{ip} is not an IP address in its usual form"
        embedded = embedded_ipv4(address)
        judged = embedded[1] if embedded else address
        if self._allowed(address) or (embedded and self._allowed(embedded[1])):
            return None
        subject = (
            f"{address} is"
            if embedded is None
            else (f"{_show(address)} is the {embedded[0]} form of {judged},")
        )
        if judged in METADATA:
            return f"{subject} {METADATA[judged]} ({_METADATA_HINT})"
        if self.allow_private:
            return None
        blocked = blocked_range(judged)
        if blocked is None:
            return None
        return f"{subject} {blocked[1]} ({_HINT})"

    def check_name(self, host: str) -> str | None:
        """None if `host` may be resolved (or used as an address), else why not: no valid host
        name, an IP address in an unusual form, a cloud metadata name (always: write its address
        and allow it with allow_cidrs), a name internal by definition (unless the policy lets
        private addresses through: then its addresses are judged). `allow_cidrs` admits
        addresses, never names. An `xn--` label is judged by what it decodes to as well.

            DestinationPolicy().check_name("localhost.")   # "localhost. is a loopback name ..."
        """
        name = normal_name(host)
        if name is None:
            return f"{host!r} is not a valid host name"
        odd = unusual_ipv4(host.lower())
        if odd is not None:
            return f"{host} is {odd}; write the address as a.b.c.d (parsers disagree on this form)"
        decoded = decoded_name(name)
        for candidate in dict.fromkeys((name, decoded or name)):
            subject = (
                f"{host} is" if candidate == name else f"{host} reads as {candidate}, which is"
            )
            if candidate in METADATA_NAMES:
                return f"{subject} a cloud metadata name ({_METADATA_NAME_HINT})"
            if self.allow_private:
                continue
            for suffix, label in INTERNAL_SUFFIXES:
                if candidate == suffix or candidate.endswith("." + suffix):
                    return f"{subject} {label} ({_NAME_HINT})"
        if decoded is None or (decoded != name and decoded.isascii()):
            return (
                f"{host} is not a valid international (IDNA) name: an xn-- label must "
                "decode to letters that need it"
            )
        return None

    def _allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in (*self.allow, *self.extra))

    def filter(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The allowed ones of `host`'s `addresses`, in order; DestinationRefused if none is."""
        allowed: list[str] = []
        refused: list[str] = []
        for address in addresses:
            reason = self.check(address)
            if reason is None:
                allowed.append(address)
            else:
                refused.append(reason)
        if allowed:
            return allowed
        if not refused:
            raise DestinationRefused(f"{host} resolves to no address")
        raise DestinationRefused(f"{host} resolves only to refused addresses: {'; '.join(refused)}")


class Resolver(Protocol):
    """Host name to IP addresses (as text, e.g. "93.184.215.14", "::1")."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


def normal_name(host: str) -> str | None:
    """`host` as resolvers see it: lower case, IDNA-mapped (fullwidth `ｌｏｃａｌｈｏｓｔ` is
    `localhost`), without trailing dots; None if it is neither a host name (letters, digits,
    `-`, `_` in dot-separated labels) nor an IP address."""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if UNSAFE_URL_CHARACTERS.search(host):
        return None
    name = host.lower().rstrip(".")
    if ":" in name:
        return name if _literal(name) is not None else None
    return name if _NAME.fullmatch(name) else None


def decoded_name(name: str) -> str | None:
    """`name` with each `xn--` label decoded (Punycode), lower case; None when one does not
    decode. `xn--localhost-` decodes to `localhost` (an ACE form IDNA forbids)."""
    labels = []
    for label in name.split("."):
        if label.startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                return None
            mapped = normal_name(label)
            if mapped is None:
                return None
            label = mapped
        labels.append(label)
    return ".".join(labels)


def inet_aton(text: str) -> IPv4Address | None:
    """The address the C library's `inet_aton` (and so a resolver) reads in `text`: 1 to 4
    parts, each decimal, octal (`0177`) or hex (`0x7f`), the last filling the bytes left
    (`127.1` is 127.0.0.1); None if it reads none."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if re.fullmatch(r"0[xX][0-9a-fA-F]*", part):
            values.append(int(part[2:] or "0", 16))
        elif re.fullmatch(r"0[0-7]*", part):
            values.append(int(part, 8))
        elif re.fullmatch(r"[1-9][0-9]*", part):
            values.append(int(part))
        else:
            return None
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for value in head:
        number = number << 8 | value
    return IPv4Address(number << 8 * (4 - len(head)) | last)


def unusual_ipv4(host: str) -> str | None:
    """How `host` reads if it is an IPv4 address in any form but a.b.c.d (`127.1`, `0x7f.1`,
    `127.0.0.1.` -> "an unusual form of 127.0.0.1"); None for a.b.c.d or a name."""
    bare = host.rstrip(".")
    if not _NUMBER_LABEL.fullmatch(bare.rsplit(".", 1)[-1]) or ":" in host:
        return None
    try:
        IPv4Address(host)
        return None
    except ValueError:
        pass
    address = inet_aton(bare)
    if address is None:
        return "not a valid IPv4 address"
    blocked = blocked_range(address)
    return f"an unusual form of {address}" + (f", {blocked[1]}" if blocked else "")


def check_url_text(url: str) -> str | None:
    """Why `url` cannot be sent as written (a space or control character, which clients
    would drop or encode), or None. Refused rather than altered."""
    found = UNSAFE_URL_CHARACTERS.search(url)
    if found is None:
        return None
    character = {" ": "a space", "\t": "a tab", "\r": "a CR", "\n": "an LF"}.get(
        found.group(), f"the control character {found.group()!r}"
    )
    return f"holds {character} at position {found.start()}; encode it (%20, | urlencode)"


def looks_like_ip(host: str) -> bool:
    """aiohttp's test for "connect to this as is, without the resolver": all digits and dots
    (`127.1`, `2130706433`) or any colon (IPv6)."""
    return ":" in host or (bool(host) and host.replace(".", "").isdigit())


def _literal(host: str) -> IPAddress | None:
    try:
        return parse_ip(host)
    except ValueError:
        return None


def refusal_reason(exc: BaseException | None) -> str | None:
    """The DestinationRefused reason behind `exc`, following `__cause__` and `__context__`
    (httpx.ConnectError <- aiohttp.ClientConnectorError <- DestinationRefused); else None."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        if isinstance(current, DestinationRefused):
            return current.reason
        seen.add(id(current))
        pending += [current.__cause__, current.__context__]
    return None
