"""Issue 17, items 4 and 5, through real sockets: `relayhook serve` subprocesses on 127.0.0.1.

- a signed-out cookie is refused (SQLite);
- two `serve --role web` on one PostgreSQL: a cookie signed out on one is refused by the
  other within a second;
- uvicorn no longer believes X-Forwarded-For from 127.0.0.1: rotating it does not bypass the
  sign-in throttle; with `[server] forwarded_allow_ips` the proxy's address for the client is
  used.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from servers import RelayhookProcess, StartServer, http_client, render_config, render_tables

from relayhook.web.console.throttle import FAILURES_ALLOWED

pytestmark = pytest.mark.slow
TOKEN = "sessions-e2e-admin-token"
COOKIE = "relayhook_console"


def console_password(server: RelayhookProcess) -> str:
    found = re.search(r"Console password \(shown once[^)]*\): (\S+)", server.log())
    assert found, server.log()
    return found.group(1)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:1000]
    return found.group(1)


def sign_in(client: httpx.Client, base: str, password: str, **headers: str) -> httpx.Response:
    page = client.get(base + "/signin")
    return client.post(
        base + "/signin", data={"csrf": csrf_of(page.text), "password": password}, headers=headers
    )


def signed_in(base: str, cookie: str) -> bool:
    with http_client(cookies={COOKIE: cookie}) as client:
        answer = client.get(base + "/hooks")
    assert answer.status_code in (200, 303), answer.status_code
    return answer.status_code == 200


def sign_out(client: httpx.Client, base: str) -> None:
    page = client.get(base + "/")
    answer = client.post(base + "/signout", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"


def test_a_signed_out_cookie_is_refused_by_a_real_server(
    tmp_path: Path, start_server: StartServer
) -> None:
    server = start_server(tmp_path, render_config(relays=[], admin_token=TOKEN))
    with http_client() as browser:
        assert sign_in(browser, server.url, console_password(server)).status_code == 303
        cookie = browser.cookies[COOKIE]
        assert signed_in(server.url, cookie)
        sign_out(browser, server.url)
    assert not signed_in(server.url, cookie)


def test_two_processes_on_one_postgresql_refuse_a_revoked_cookie_within_a_second(
    tmp_path: Path, postgres_url: str, start_server: StartServer
) -> None:
    config = render_config(relays=[], admin_token=TOKEN, storage_url=postgres_url)
    first = start_server(tmp_path / "one", config, extra_args=["--role", "web"])
    second = start_server(tmp_path / "two", config, extra_args=["--role", "web"])
    with http_client() as browser:
        assert sign_in(browser, first.url, console_password(first)).status_code == 303
        cookie = browser.cookies[COOKIE]
        assert signed_in(second.url, cookie)
        sign_out(browser, first.url)
        signed_out_at = time.monotonic()
    while signed_in(second.url, cookie):
        assert time.monotonic() - signed_out_at < 5, "the other process kept the session"
        time.sleep(0.02)
    took = time.monotonic() - signed_out_at
    print(f"the other process refused the signed-out cookie after {took:.3f} s")
    assert took < 1.0


def test_rotating_x_forwarded_for_does_not_bypass_the_throttle(
    tmp_path: Path, start_server: StartServer
) -> None:
    server = start_server(tmp_path, render_config(relays=[], admin_token=TOKEN))
    codes = []
    with http_client() as attacker:
        for n in range(FAILURES_ALLOWED + 3):
            codes.append(
                sign_in(
                    attacker,
                    server.url,
                    "a wrong guess here",
                    **{"X-Forwarded-For": f"198.51.100.{n}"},
                ).status_code
            )
        right = sign_in(
            attacker, server.url, console_password(server), **{"X-Forwarded-For": "192.0.2.1"}
        )
    assert codes == [401] * FAILURES_ALLOWED + [429] * 3
    assert right.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = render_config(relays=[], admin_token=TOKEN) + render_tables(
        server={"forwarded_allow_ips": ["127.0.0.1"]}
    )
    server = start_server(tmp_path, config)
    with http_client() as proxy:
        codes = [
            sign_in(
                proxy, server.url, "a wrong guess here", **{"X-Forwarded-For": "203.0.113.66"}
            ).status_code
            for _ in range(FAILURES_ALLOWED + 1)
        ]
        assert codes[-1] == 429
        admin = sign_in(
            proxy, server.url, console_password(server), **{"X-Forwarded-For": "198.51.100.20"}
        )
        assert admin.status_code == 303
        listed = proxy.get(
            server.url + "/api/sessions", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
    assert [s["address"] for s in listed["sessions"]] == ["198.51.100.20"]
