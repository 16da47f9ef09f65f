"""Issue 17, item 5: client addresses from a proxy only when told, sign-in throttled by address
and by account without locking the admin out, and argon2 work capped.

In process over a real SQLite file; `peer` is the socket address the app sees. Through real
sockets (uvicorn's own proxy-header handling included): test_sessions_e2e.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from asgi import PASSWORD, TOKEN, client_of, in_process, sign_in
from conftest import run
from servers import render_config, render_tables

from relayhook.core.clients import TrustedProxies, address_key
from relayhook.settings import load_settings
from relayhook.web.console.throttle import ACCOUNT_FAILURES, FAILURES_ALLOWED, SignInGuard

PROXY = ("10.0.0.2", 40000)


def config(**server: object) -> str:
    return render_config(relays=[], admin_token=TOKEN) + (
        render_tables(server=dict(server)) if server else ""
    )


def scope(peer: str, *forwarded: str) -> dict[str, object]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"client": (peer, 1234), "headers": headers}


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        pytest.param(
            [],
            "127.0.0.1",
            ["203.0.113.9"],
            "127.0.0.1",
            id="default: the header is ignored, even from 127.0.0.1",
        ),
        pytest.param(
            ["10.0.0.2"],
            "192.0.2.50",
            ["203.0.113.9"],
            "192.0.2.50",
            id="from an untrusted peer: ignored",
        ),
        pytest.param(
            ["10.0.0.2"],
            "10.0.0.2",
            ["203.0.113.9"],
            "203.0.113.9",
            id="a trusted proxy: the address it saw",
        ),
        pytest.param(
            ["10.0.0.2"],
            "10.0.0.2",
            ["1.2.3.4, 203.0.113.9"],
            "203.0.113.9",
            id="what the client wrote at the left is never reached",
        ),
        pytest.param(
            ["10.0.0.0/24"],
            "10.0.0.2",
            ["203.0.113.9, 10.0.0.7"],
            "203.0.113.9",
            id="a chain of trusted proxies, read from the right",
        ),
        pytest.param(
            ["10.0.0.0/24"],
            "10.0.0.2",
            ["203.0.113.9", "10.0.0.7"],
            "203.0.113.9",
            id="the header twice is one list",
        ),
        pytest.param(
            ["10.0.0.2"],
            "10.0.0.2",
            ["not-an-ip"],
            "10.0.0.2",
            id="an unreadable hop: the proxy answers for it",
        ),
        pytest.param(["10.0.0.2"], "10.0.0.2", [], "10.0.0.2", id="no header"),
        pytest.param(["*"], "192.0.2.50", ["203.0.113.9"], "203.0.113.9", id="* trusts any"),
        pytest.param(["::1"], "::1", ["2001:db8::5"], "2001:db8::5", id="IPv6"),
    ],
)
def test_the_client_address(
    trusted: list[str], peer: str, forwarded: list[str], client: str
) -> None:
    assert TrustedProxies.from_config(trusted).client_of(scope(peer, *forwarded)) == client


def test_a_bad_forwarded_allow_ips_entry_is_named(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.toml"
    path.write_text('[server]\nforwarded_allow_ips = ["10.0.0.2", "proxy.local"]\n')
    with pytest.raises(Exception, match="'proxy.local' is not an IP address or network"):
        load_settings(path)
    assert load_settings(None).server.forwarded_allow_ips == []


def test_an_ipv6_address_counts_by_its_64() -> None:
    assert address_key("2001:db8:1:2::7") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("2001:db8:1:2::7") != address_key("2001:db8:1:3::7")
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("::ffff:203.0.113.9") == "::ffff:cb00:7109"


async def guess(client: httpx.AsyncClient, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return (await sign_in(client, "a wrong guess here", **headers)).status_code


def test_rotating_x_forwarded_for_from_an_untrusted_peer_does_not_bypass_the_throttle(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(), peer=("127.0.0.1", 5000)) as (app, client):
            answers = [await guess(client, f"198.51.100.{n}") for n in range(12)]
            assert answers == [401] * FAILURES_ALLOWED + [429] * (12 - FAILURES_ALLOWED)
            throttled = await sign_in(client, PASSWORD, **{"X-Forwarded-For": "198.51.100.99"})
            assert throttled.status_code == 429
            assert "Too many wrong passwords. Try again in" in throttled.text
            assert int(throttled.headers["Retry-After"]) > 0
            # another address is not held back
            async with client_of(app, ("192.0.2.10", 5000)) as admin:
                assert (await sign_in(admin)).status_code == 303

    run(main())


def test_behind_a_trusted_proxy_the_real_address_is_throttled(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(
            tmp_path, config(forwarded_allow_ips=["10.0.0.0/24"]), peer=PROXY
        ) as (app, client):
            attacker = "203.0.113.66"
            answers = [await guess(client, attacker) for _ in range(FAILURES_ALLOWED + 2)]
            assert answers[-1] == 429 and answers[:FAILURES_ALLOWED] == [401] * FAILURES_ALLOWED
            # The admin behind the same proxy, from their own address, signs in.
            admin = await sign_in(client, PASSWORD, **{"X-Forwarded-For": "198.51.100.20"})
            assert admin.status_code == 303
            listed = await client.get("/api/sessions", headers={"Authorization": f"Bearer {TOKEN}"})
            assert [s["address"] for s in listed.json()["sessions"]] == ["198.51.100.20"]

    run(main())


def test_one_attacker_cannot_lock_the_admin_out(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(), peer=("203.0.113.66", 5000)) as (app, bad):
            answers = [await guess(bad) for _ in range(40)]
            assert answers.count(401) == FAILURES_ALLOWED  # the rest: 429, no argon2 run
            async with client_of(app, ("192.0.2.10", 5000)) as admin:
                assert (await sign_in(admin)).status_code == 303

    run(main())


def test_many_addresses_slow_new_browsers_but_not_one_the_admin_used(tmp_path: Path) -> None:
    """The per-account count is not a lockout: a browser that signed in before keeps its way
    in while a guessing attack from many addresses holds back browsers new to the account."""

    async def main() -> None:
        async with in_process(tmp_path, config(), peer=("192.0.2.10", 5000)) as (app, admin):
            assert (await sign_in(admin)).status_code == 303  # leaves the device cookie
            attackers = ACCOUNT_FAILURES // FAILURES_ALLOWED + 1
            codes = []
            for n in range(attackers):
                async with client_of(app, (f"203.0.113.{n + 1}", 5000)) as bad:
                    codes += [await guess(bad) for _ in range(FAILURES_ALLOWED)]
            assert codes.count(401) == ACCOUNT_FAILURES and 429 in codes
            async with client_of(app, ("198.51.100.77", 5000)) as new_browser:
                refused = await sign_in(new_browser)
                assert refused.status_code == 429
                assert "from new browsers" in refused.text
                assert "sign in from a browser you used before" in refused.text
            admin.cookies.delete("relayhook_console")
            assert (await sign_in(admin)).status_code == 303  # the known browser gets in

    run(main())


def test_argon2_work_is_capped() -> None:
    """One verification at a time; past `waiting` more, "busy" at once, nothing run."""
    running, most = 0, 0
    lock = threading.Lock()
    release = threading.Event()

    def slow_check(value: int) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(5)
        with lock:
            running -= 1
        return True

    async def main() -> list[bool | None]:
        guard = SignInGuard(time.monotonic, slots=1, waiting=3)
        tasks = [asyncio.create_task(guard.verify(slow_check, n)) for n in range(3)]
        await asyncio.sleep(0.05)
        busy = await guard.verify(slow_check, 99)
        release.set()
        return [busy, *await asyncio.gather(*tasks)]

    assert run(main()) == [None, True, True, True]
    assert most == 1


def test_behind_a_proxy_not_listed_the_admins_browser_still_gets_in(tmp_path: Path) -> None:
    """Every client shares the proxy's address when it is not in forwarded_allow_ips: an
    attacker's guesses hold that address back, but not a browser that signed in before."""

    async def main() -> None:
        async with in_process(tmp_path, config(), peer=PROXY) as (app, admin):
            assert (await sign_in(admin)).status_code == 303  # leaves the device cookie
            async with client_of(app, PROXY) as bad:
                codes = [await guess(bad) for _ in range(FAILURES_ALLOWED + 3)]
                assert codes[-1] == 429
                assert (await sign_in(bad)).status_code == 429  # the address is held back
            admin.cookies.delete("relayhook_console")
            assert (await sign_in(admin)).status_code == 303

    run(main())
