"""The SSRF guard's address policy and URL check, against a stub resolver: no test here opens a
connection or asks a real DNS server anything."""

from __future__ import annotations

import asyncio
import errno
import pickle
from ipaddress import ip_network

import pytest

from relayhook.core.ssrf import (
    DestinationPolicy,
    DestinationRefused,
    check_url_text,
    looks_like_ip,
    parse_cidrs,
    refusal_reason,
)
from relayhook.delivery.destinations import check_destination as check_url

DEFAULT = DestinationPolicy()
PRIVATE_OK = DestinationPolicy(allow_private=True)
LOOPBACK_ONLY = DestinationPolicy(allow=(ip_network("127.0.0.1/32"),))


class StubResolver:
    """Answers from a table; a name not in it fails the test (never real DNS)."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise AssertionError(f"the stub resolver has no answer for {host!r}")
        return self.answers[host]


def refusal(
    url: str, policy: DestinationPolicy = DEFAULT, resolver: StubResolver | None = None
) -> str:
    """The reason `check_url` refuses `url` with."""
    with pytest.raises(DestinationRefused) as caught:
        asyncio.run(check_url(url, policy, resolver or StubResolver()))
    return caught.value.reason


# One address in each blocked range, with a word its reason must contain.
BLOCKED = [
    pytest.param("0.0.0.0", "'this network'", id="0.0.0.0/8 unspecified"),
    pytest.param("0.1.2.3", "'this network'", id="0.0.0.0/8"),
    pytest.param("10.1.2.3", "private", id="10/8"),
    pytest.param("100.64.0.1", "CGNAT", id="100.64/10 CGNAT low"),
    pytest.param("100.127.255.254", "CGNAT", id="100.64/10 CGNAT high"),
    pytest.param("127.0.0.1", "loopback", id="127/8"),
    pytest.param("127.255.255.254", "loopback", id="127/8 high"),
    pytest.param("169.254.1.1", "link-local (cloud metadata)", id="169.254/16"),
    pytest.param("172.16.0.1", "private", id="172.16/12 low"),
    pytest.param("172.31.255.254", "private", id="172.16/12 high"),
    pytest.param("192.0.0.8", "IETF protocol", id="192.0.0.0/24"),
    pytest.param("192.0.2.1", "documentation", id="192.0.2.0/24 TEST-NET-1"),
    pytest.param("192.88.99.1", "6to4 relay", id="192.88.99.0/24"),
    pytest.param("192.168.1.1", "private", id="192.168/16"),
    pytest.param("198.18.0.1", "benchmarking", id="198.18/15 low"),
    pytest.param("198.19.255.254", "benchmarking", id="198.18/15 high"),
    pytest.param("198.51.100.1", "documentation", id="198.51.100/24 TEST-NET-2"),
    pytest.param("203.0.113.1", "documentation", id="203.0.113/24 TEST-NET-3"),
    pytest.param("224.0.0.1", "multicast", id="224/4 low"),
    pytest.param("239.255.255.250", "multicast", id="224/4 high"),
    pytest.param("240.0.0.1", "reserved", id="240/4"),
    pytest.param("255.255.255.255", "broadcast", id="240/4 broadcast"),
    pytest.param("::", "unspecified", id="::/128"),
    pytest.param("::1", "loopback", id="::1/128"),
    pytest.param("::102:304", "IPv4-compatible", id="::/96 IPv4-compatible"),
    pytest.param("64:ff9b:1::1", "local-use NAT64", id="64:ff9b:1::/48"),
    pytest.param("100::1", "discard-only", id="100::/64"),
    pytest.param("2001:2::1", "IETF protocol", id="2001::/23"),
    pytest.param("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo", id="2001::/32 Teredo"),
    pytest.param("2001:db8::1", "documentation", id="2001:db8::/32"),
    pytest.param("fc00::1", "unique local", id="fc00::/7 low"),
    pytest.param("fd00::1", "unique local", id="fc00::/7 fd00::1"),
    pytest.param("fe80::1", "link-local", id="fe80::/10"),
    pytest.param("fe80::1%eth0", "link-local", id="fe80::/10 with a zone"),
    pytest.param("fec0::1", "site-local", id="fec0::/10"),
    pytest.param("ff02::1", "multicast", id="ff00::/8"),
    pytest.param("1000::1", "outside global unicast", id="::/3 unassigned"),
    pytest.param("4000::1", "outside global unicast", id="4000::/2 unassigned"),
    pytest.param("8000::1", "outside global unicast", id="8000::/1 unassigned"),
]

METADATA = [
    pytest.param("169.254.169.254", id="AWS GCP Azure OpenStack"),
    pytest.param("169.254.170.2", id="AWS ECS credentials"),
    pytest.param("fd00:ec2::254", id="AWS IPv6"),
    pytest.param("100.100.100.200", id="Alibaba Cloud"),
    pytest.param("168.63.129.16", id="Azure WireServer"),
    pytest.param("::ffff:169.254.169.254", id="IPv4-mapped 169.254.169.254"),
    pytest.param("64:ff9b::a9fe:a9fe", id="NAT64 169.254.169.254"),
    pytest.param("2002:a9fe:a9fe::1", id="6to4 169.254.169.254"),
]

# IPv4 hidden in IPv6: judged by the IPv4 address.
EMBEDDED = [
    pytest.param("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, a loopback", id="mapped"),
    pytest.param("::ffff:7f00:1", "IPv4-mapped form of 127.0.0.1, a loopback", id="mapped hex"),
    pytest.param("64:ff9b::7f00:1", "NAT64 form of 127.0.0.1, a loopback", id="NAT64"),
    pytest.param("2002:7f00:1::1", "6to4 form of 127.0.0.1, a loopback", id="6to4"),
    pytest.param("::ffff:10.0.0.1", "IPv4-mapped form of 10.0.0.1, a private", id="mapped private"),
    pytest.param(
        "64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254, a cloud metadata", id="NAT64 metadata"
    ),
]

PUBLIC = [
    pytest.param("93.184.215.14", id="example.com"),
    pytest.param("8.8.8.8", id="8.8.8.8"),
    pytest.param("1.1.1.1", id="1.1.1.1"),
    pytest.param("11.0.0.1", id="just above 10/8"),
    pytest.param("100.63.255.255", id="just below CGNAT"),
    pytest.param("100.128.0.0", id="just above CGNAT"),
    pytest.param("126.255.255.255", id="just below 127/8"),
    pytest.param("172.15.255.255", id="just below 172.16/12"),
    pytest.param("172.32.0.0", id="just above 172.16/12"),
    pytest.param("198.17.255.255", id="just below 198.18/15"),
    pytest.param("198.20.0.0", id="just above 198.18/15"),
    pytest.param("223.255.255.255", id="just below multicast"),
    pytest.param("2606:2800:21f:cb07:6820:80da:af6b:8b2c", id="example.com IPv6"),
    pytest.param("2001:4860:4860::8888", id="Google DNS IPv6"),
    pytest.param("::ffff:93.184.215.14", id="IPv4-mapped public"),
    pytest.param("64:ff9b::5db8:d70e", id="NAT64 public"),
    pytest.param("2002:5db8:d70e::1", id="6to4 public"),
]


@pytest.mark.parametrize(("address", "word"), BLOCKED)
def test_each_blocked_range_is_refused_with_its_reason(address: str, word: str) -> None:
    reason = DEFAULT.check(address)
    assert reason is not None
    assert word in reason
    assert "allow_private_destinations or allow_cidrs" in reason


def test_the_reason_names_the_address_the_range_and_the_way_out() -> None:
    assert DEFAULT.check("127.0.0.1") == (
        "127.0.0.1 is a loopback address"
        " (set [delivery] allow_private_destinations or allow_cidrs to reach it)"
    )


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert DEFAULT.check(address) is None


@pytest.mark.parametrize(("address", "words"), EMBEDDED)
def test_ipv4_in_ipv6_is_judged_by_the_ipv4(address: str, words: str) -> None:
    reason = DEFAULT.check(address)
    assert reason is not None
    assert words in reason


@pytest.mark.parametrize("address", METADATA)
def test_metadata_is_refused_even_with_allow_private(address: str) -> None:
    for policy in (DEFAULT, PRIVATE_OK):
        reason = policy.check(address)
        assert reason is not None
        assert "cloud metadata" in reason
        assert "only [delivery] allow_cidrs can reach it" in reason


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "127.0.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "169.254.1.1",
    ],
)
def test_allow_private_lets_private_addresses_through(address: str) -> None:
    assert PRIVATE_OK.check(address) is None


@pytest.mark.parametrize(
    ("policy", "address", "allowed"),
    [
        pytest.param(LOOPBACK_ONLY, "127.0.0.1", True, id="the allowed address"),
        pytest.param(LOOPBACK_ONLY, "::ffff:127.0.0.1", True, id="its IPv4-mapped form"),
        pytest.param(LOOPBACK_ONLY, "127.0.0.2", False, id="its neighbour"),
        pytest.param(LOOPBACK_ONLY, "::1", False, id="IPv6 loopback is another address"),
        pytest.param(LOOPBACK_ONLY, "10.0.0.1", False, id="a private address"),
        pytest.param(
            DestinationPolicy(allow=(ip_network("10.0.0.0/8"),)),
            "10.200.0.1",
            True,
            id="inside an allowed network",
        ),
        pytest.param(
            DestinationPolicy(allow=(ip_network("10.0.0.0/8"),)),
            "192.168.0.1",
            False,
            id="outside it",
        ),
        pytest.param(
            DestinationPolicy(allow=(ip_network("::ffff:127.0.0.1/128"),)),
            "::ffff:127.0.0.1",
            True,
            id="an allowed mapped form",
        ),
        pytest.param(
            DestinationPolicy(allow=(ip_network("169.254.169.254/32"),)),
            "169.254.169.254",
            True,
            id="metadata allowed explicitly",
        ),
        pytest.param(
            DestinationPolicy(allow=(ip_network("169.254.169.254/32"),)),
            "64:ff9b::a9fe:a9fe",
            True,
            id="metadata allowed explicitly, NAT64 form",
        ),
        pytest.param(
            DestinationPolicy(allow=(ip_network("10.0.0.0/8"),)),
            "169.254.169.254",
            False,
            id="an unrelated allowed network does not open metadata",
        ),
    ],
)
def test_allow_cidrs(policy: DestinationPolicy, address: str, allowed: bool) -> None:
    assert (policy.check(address) is None) is allowed


def test_policy_from_config() -> None:
    policy = DestinationPolicy.from_config(
        allow_private_destinations=False, allow_cidrs=["127.0.0.1/32", " ::1 "]
    )
    assert policy.allow == (ip_network("127.0.0.1/32"), ip_network("::1/128"))
    assert policy.check("::1") is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("10.0.0.1/8", id="host bits set"),
        pytest.param("nope", id="not an address"),
        pytest.param("10.0.0.0/33", id="prefix too long"),
    ],
)
def test_a_bad_allow_cidr_is_named(value: str) -> None:
    with pytest.raises(ValueError, match="allow_cidrs") as caught:
        parse_cidrs(["127.0.0.1/32", value])
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    ("url", "word"),
    [
        pytest.param("http://169.254.169.254/latest/meta-data/", "cloud metadata", id="metadata"),
        pytest.param("http://10.0.0.1/", "private", id="10.0.0.1"),
        pytest.param("http://100.64.0.1:8080/", "CGNAT", id="100.64.0.1"),
        pytest.param("http://[fd00::1]/", "unique local", id="[fd00::1]"),
        pytest.param(
            "http://[64:ff9b::a9fe:a9fe]/",
            "NAT64 form of 169.254.169.254",
            id="[64:ff9b::a9fe:a9fe]",
        ),
        pytest.param(
            "http://[::ffff:127.0.0.1]:8080/",
            "IPv4-mapped form of 127.0.0.1",
            id="[::ffff:127.0.0.1]",
        ),
        pytest.param("https://127.0.0.1/", "loopback", id="https loopback"),
        pytest.param("HTTP://10.0.0.1/", "private", id="upper-case scheme"),
        pytest.param("http://user:pw@10.0.0.1/", "private", id="with user info"),
    ],
)
def test_check_url_refuses_an_ip_literal_without_resolving(url: str, word: str) -> None:
    resolver = StubResolver()
    assert word in refusal(url, resolver=resolver)
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("host", "answer", "word"),
    [
        pytest.param("internal.example", ["10.0.0.5"], "10.0.0.5 is a private", id="private"),
        pytest.param("metadata.example", ["169.254.169.254"], "cloud metadata", id="metadata"),
        pytest.param(
            "localhost.example",
            ["127.0.0.1", "::1"],
            "::1 is a loopback",
            id="a public name that resolves to loopback",
        ),
        pytest.param("nothing.example", [], "resolves to no address", id="no answer"),
    ],
)
def test_check_url_refuses_a_name_that_resolves_only_to_refused_addresses(
    host: str, answer: list[str], word: str
) -> None:
    resolver = StubResolver({host: answer})
    reason = refusal(f"http://{host}:8080/hook", resolver=resolver)
    assert host in reason
    assert word in reason
    assert resolver.calls == [(host, 8080)]


def test_a_name_with_one_refused_record_is_refused_at_save() -> None:
    """Issue 17, item 6: at save, one refused address among public ones refuses the name (at
    send time the connector's resolver keeps only the allowed ones: test_http_client.py)."""
    for answer in (["10.0.0.5", "93.184.215.14"], ["93.184.215.14", "127.0.0.1"]):
        reason = refusal("http://mixed.example/", resolver=StubResolver({"mixed.example": answer}))
        assert reason.startswith("mixed.example resolves to a refused address: ")
        assert ("10.0.0.5 is a private" in reason) or ("127.0.0.1 is a loopback" in reason)


@pytest.mark.parametrize(
    ("url", "answer", "kept"),
    [
        pytest.param(
            "https://public.example/",
            ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            id="all public: all of them, in order",
        ),
    ],
)
def test_check_url_keeps_only_allowed_addresses(
    url: str, answer: list[str], kept: list[str]
) -> None:
    host = url.split("/")[2]
    assert asyncio.run(check_url(url, DEFAULT, StubResolver({host: answer}))) == kept


@pytest.mark.parametrize(
    ("url", "port"),
    [
        pytest.param("http://a.example/", 80, id="http"),
        pytest.param("https://a.example/", 443, id="https"),
        pytest.param("https://a.example:8443/x?y=1", 8443, id="explicit port"),
    ],
)
def test_check_url_resolves_with_the_port(url: str, port: int) -> None:
    resolver = StubResolver({"a.example": ["93.184.215.14"]})
    asyncio.run(check_url(url, DEFAULT, resolver))
    assert resolver.calls == [("a.example", port)]


def test_check_url_passes_public_literals_and_allowed_private_ones() -> None:
    resolver = StubResolver()
    assert asyncio.run(check_url("http://93.184.215.14/", DEFAULT, resolver)) == ["93.184.215.14"]
    assert asyncio.run(check_url("http://127.0.0.1:9/", LOOPBACK_ONLY, resolver)) == ["127.0.0.1"]
    assert asyncio.run(check_url("http://[::1]/", PRIVATE_OK, resolver)) == ["::1"]
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "words"),
    [
        pytest.param("ftp://example.com/", "only http and https", id="ftp"),
        pytest.param("file:///etc/passwd", "only http and https", id="file"),
        pytest.param("gopher://127.0.0.1:6379/_INFO", "only http and https", id="gopher"),
        pytest.param("dict://127.0.0.1:11211/stats", "only http and https", id="dict"),
        pytest.param("javascript:alert(1)", "only http and https", id="javascript"),
        pytest.param("//example.com/", "only http and https", id="no scheme"),
        pytest.param("http:///path", "has no host", id="no host"),
        pytest.param("http://example.com:99999/", "not a valid URL", id="port out of range"),
    ],
)
def test_check_url_refuses_what_is_not_an_http_url(url: str, words: str) -> None:
    resolver = StubResolver()
    assert words in refusal(url, resolver=resolver)
    assert resolver.calls == []


def test_destination_refused_is_an_os_error_that_says_why() -> None:
    exc = DestinationRefused("10.0.0.1 is a private address")
    assert isinstance(exc, OSError)
    assert exc.errno == errno.EACCES
    assert str(exc) == exc.reason == "10.0.0.1 is a private address"
    copy = pickle.loads(pickle.dumps(exc))
    assert isinstance(copy, DestinationRefused)
    assert copy.reason == exc.reason


def _chain(*exceptions: BaseException, link: str) -> BaseException:
    """exceptions[0] raised from (or during) exceptions[1], ..."""
    for outer, inner in zip(exceptions, exceptions[1:], strict=False):
        setattr(outer, link, inner)
    return exceptions[0]


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        pytest.param(DestinationRefused("why"), "why", id="itself"),
        pytest.param(
            _chain(
                RuntimeError("httpx"),
                OSError("aiohttp"),
                DestinationRefused("why"),
                link="__cause__",
            ),
            "why",
            id="raise from",
        ),
        pytest.param(
            _chain(RuntimeError("outer"), DestinationRefused("why"), link="__context__"),
            "why",
            id="raised while handling",
        ),
        pytest.param(
            _chain(RuntimeError("httpx"), OSError("unrelated"), link="__cause__"),
            None,
            id="another error",
        ),
        pytest.param(None, None, id="no error"),
    ],
)
def test_refusal_reason_walks_the_chain(exc: BaseException | None, reason: str | None) -> None:
    assert refusal_reason(exc) == reason


def test_refusal_reason_survives_a_cycle() -> None:
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert refusal_reason(first) is None


@pytest.mark.parametrize(
    ("host", "literal"),
    [
        pytest.param("127.0.0.1", True, id="dotted quad"),
        pytest.param("127.1", True, id="short form"),
        pytest.param("2130706433", True, id="one number"),
        pytest.param("::1", True, id="IPv6"),
        pytest.param("0x7f000001", False, id="hex: aiohttp resolves it"),
        pytest.param("localhost", False, id="a name"),
        pytest.param("", False, id="empty"),
    ],
)
def test_looks_like_ip_matches_aiohttp(host: str, literal: bool) -> None:
    from aiohttp.helpers import is_ip_address

    assert looks_like_ip(host) is literal
    assert is_ip_address(host) is literal


# --- names and forms refused before any resolver is asked (issue 7, item 4) -----------------

INTERNAL_NAMES = [
    pytest.param("localhost", "loopback name", id="localhost"),
    pytest.param("LocalHost", "loopback name", id="LocalHost"),
    pytest.param("localhost.", "loopback name", id="localhost. (trailing dot)"),
    pytest.param("localhost..", "loopback name", id="localhost.. (two trailing dots)"),
    pytest.param("api.localhost", "loopback name", id="*.localhost"),
    pytest.param(
        "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
        "loopback name",
        id="fullwidth localhost",
    ),
    pytest.param("metadata.google.internal", "cloud metadata name", id="GCP metadata"),
    pytest.param("metadata.google.internal.", "cloud metadata name", id="GCP metadata."),
    pytest.param("metadata.goog", "cloud metadata name", id="metadata.goog"),
    pytest.param("instance-data.ec2.internal", "cloud metadata name", id="AWS instance-data"),
    pytest.param("db.internal", "private-network name", id="*.internal"),
    pytest.param("ip-10-0-0-1.ec2.internal", "private-network name", id="EC2 private DNS"),
    pytest.param("printer.local", "multicast DNS", id="*.local"),
    pytest.param("nas.home.arpa", "home-network", id="*.home.arpa"),
]


@pytest.mark.parametrize(("host", "words"), INTERNAL_NAMES)
def test_names_internal_by_definition_are_refused_without_resolving(host: str, words: str) -> None:
    resolver = StubResolver()
    reason = refusal(f"http://{host}:8080/hook", resolver=resolver)
    assert words in reason
    assert resolver.calls == []


@pytest.mark.parametrize(
    "host",
    [
        "localhost.example.com",
        "internal.example",
        "notlocalhost.example",
        "local.example",
        "example.com.",
        "metadata.example",
    ],
)
def test_names_that_only_contain_those_words_are_resolved(host: str) -> None:
    resolver = StubResolver({host: ["93.184.215.14"]})
    assert asyncio.run(check_url(f"http://{host}/", DEFAULT, resolver)) == ["93.184.215.14"]
    assert resolver.calls == [(host, 80)]


def test_allowing_private_addresses_judges_internal_names_by_their_addresses() -> None:
    resolver = StubResolver({"localhost": ["127.0.0.1"], "db.internal": ["10.0.0.9"]})
    assert asyncio.run(check_url("http://localhost/", PRIVATE_OK, resolver)) == ["127.0.0.1"]
    assert asyncio.run(check_url("http://db.internal/", PRIVATE_OK, resolver)) == ["10.0.0.9"]


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost.", "api.localhost", "x.localhost.", "db.internal", "xn--localhost-"],
)
def test_allow_cidrs_admits_addresses_not_names(host: str) -> None:
    """Issue 17, item 6: `allow_cidrs` reached `localhost` (the README said it could not):
    a name internal by definition is refused by name under it; write the address."""
    resolver = StubResolver()
    reason = refusal(f"http://{host}:8080/", LOOPBACK_ONLY, resolver)
    assert "write the address and allow it with [delivery] allow_cidrs" in reason
    assert resolver.calls == []
    assert asyncio.run(check_url("http://127.0.0.1:8080/", LOOPBACK_ONLY, resolver)) == [
        "127.0.0.1"
    ]


@pytest.mark.parametrize(
    "policy",
    [
        DEFAULT,
        PRIVATE_OK,
        LOOPBACK_ONLY,
        DestinationPolicy(allow=(ip_network("169.254.169.254/32"),)),
    ],
)
@pytest.mark.parametrize(
    "host",
    [
        "metadata.google.internal",
        "metadata.google.internal.",
        "metadata",
        "metadata.",
        "instance-data",
    ],
)
def test_a_metadata_name_is_refused_by_every_policy(policy: DestinationPolicy, host: str) -> None:
    resolver = StubResolver()
    reason = refusal(f"http://{host}/computeMetadata/v1/", policy, resolver)
    assert reason == (
        f"{host} is a cloud metadata name (write its address and allow it with "
        "[delivery] allow_cidrs)"
    )
    assert resolver.calls == []


UNUSUAL_FORMS = [
    pytest.param(
        "127.000.000.001", "an unusual form of 127.0.0.1, a loopback address", id="leading zeros"
    ),
    pytest.param("0x7f.1", "an unusual form of 127.0.0.1", id="0x7f.1"),
    pytest.param("127.1", "an unusual form of 127.0.0.1", id="127.1"),
    pytest.param("0x7f000001", "an unusual form of 127.0.0.1", id="0x7f000001"),
    pytest.param("2130706433", "an unusual form of 127.0.0.1", id="2130706433"),
    pytest.param("0177.1", "an unusual form of 127.0.0.1", id="0177.1 octal"),
    pytest.param("127.0.0.1.", "an unusual form of 127.0.0.1", id="trailing dot"),
    pytest.param("0x5d.184.215.14", "an unusual form of 93.184.215.14;", id="a public one"),
    pytest.param("1.2.3.4.5", "not a valid IPv4 address", id="five parts"),
    pytest.param("08.0.0.1", "not a valid IPv4 address", id="bad octal"),
    pytest.param("999.1.1.1", "not a valid IPv4 address", id="out of range"),
]


@pytest.mark.parametrize(("host", "words"), UNUSUAL_FORMS)
def test_an_address_in_an_unusual_form_is_refused_by_every_policy(host: str, words: str) -> None:
    for policy in (DEFAULT, PRIVATE_OK, LOOPBACK_ONLY):
        resolver = StubResolver()
        reason = refusal(f"http://{host}:8080/", policy, resolver)
        assert reason.startswith(f"{host} is {words}"), reason
        assert reason.endswith("; write the address as a.b.c.d (parsers disagree on this form)")
        assert resolver.calls == []


@pytest.mark.parametrize("address", ["127.000.000.001", "0x7f.1", "1.2.3.4.5", "fe80::zz"])
def test_the_socket_check_refuses_an_unusual_address_instead_of_raising(address: str) -> None:
    assert DEFAULT.check(address) == f"{address} is not an IP address in its usual form"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        pytest.param("http://example.com/a\r\nHost: evil", "holds a CR at position 20", id="CRLF"),
        pytest.param("http://example.com/a\nb", "holds an LF", id="LF"),
        pytest.param("http://example.com/a b", "holds a space at position 20", id="space"),
        pytest.param("http://example.com/\tx", "holds a tab", id="tab"),
        pytest.param(" http://example.com/", "holds a space at position 0", id="leading space"),
        pytest.param("http://example.com/\n", "holds an LF", id="trailing LF"),
        pytest.param("http://exa\x00mple.com/", "the control character '\\x00'", id="NUL"),
        pytest.param("http://example.com/\x7f", "the control character '\\x7f'", id="DEL"),
    ],
)
def test_a_url_with_a_space_or_control_character_is_refused_not_altered(
    url: str, words: str
) -> None:
    resolver = StubResolver()
    reason = refusal(url, resolver=resolver)
    assert words in reason
    assert repr(url) in reason
    assert resolver.calls == []
    assert check_url_text("http://example.com/a%20b") is None
