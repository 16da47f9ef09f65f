"""Issue 17, item 4: console sessions with a server side, on both engines, in process.

A row per sign-in; signing out, revoking (console or API) and changing the password end
sessions; a second app on the same database (another process's view) refuses a revoked cookie
within SESSION_CHECK_SECONDS. The end-to-end tests through `relayhook serve` are in
test_sessions_e2e.py.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from asgi import BEARER, PASSWORD, TOKEN, client_of, csrf_of, in_process, post_form, sign_in
from conftest import ENGINES, run
from itsdangerous import URLSafeTimedSerializer
from postgres import query
from servers import render_config

from relayhook.web.app import create_app
from relayhook.web.console.session import COOKIE, SESSION_CHECK_SECONDS, token_hash

UA = {"User-Agent": "Firefox/128 (the admin's laptop)"}


@pytest.fixture(params=ENGINES)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'relayhook.db'}"
    return str(request.getfixturevalue("postgres_url"))


def config(storage_url: str) -> str:
    return render_config(relays=[], admin_token=TOKEN, storage_url=storage_url)


async def signed_in(client: httpx.AsyncClient) -> bool:
    answer = await client.get("/")
    assert answer.status_code in (200, 303), answer.status_code
    return answer.status_code == 200


def test_a_signed_out_cookie_is_refused(tmp_path: Path, storage_url: str) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(storage_url)) as (app, client):
            assert (await sign_in(client, **UA)).status_code == 303
            stolen = client.cookies[COOKIE]
            assert await signed_in(client)
            signed_out = await post_form(client, "/signout", {})
            assert signed_out.status_code == 303 and signed_out.headers["location"] == "/signin"
            assert not await signed_in(client)
            async with client_of(app, cookies={COOKIE: stolen}) as thief:
                answer = await thief.get("/hooks")
                assert answer.status_code == 303
                assert answer.headers["location"].startswith("/signin")
            assert (await client.get("/api/sessions", headers=BEARER)).json() == {"sessions": []}

    run(main())


def test_sessions_are_listed_and_revoked_in_the_console_and_the_api(
    tmp_path: Path, storage_url: str
) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(storage_url)) as (app, laptop):
            assert (await sign_in(laptop, **UA)).status_code == 303
            async with (
                client_of(app, ("198.51.100.7", 4000)) as phone,
                client_of(app, ("198.51.100.8", 4000)) as tablet,
            ):
                assert (await sign_in(phone, **{"User-Agent": "Phone"})).status_code == 303
                assert (await sign_in(tablet, **{"User-Agent": "Tablet"})).status_code == 303
                listed = (await laptop.get("/api/sessions", headers=BEARER)).json()["sessions"]
                # every browser signed in within the same second: no order to rely on
                assert sorted(s["user_agent"] for s in listed) == sorted(
                    ["Tablet", "Phone", UA["User-Agent"]]
                )
                by_agent = {s["user_agent"]: s for s in listed}
                assert by_agent["Phone"]["address"] == "198.51.100.7"
                assert by_agent["Phone"]["account"] == "admin"
                assert set(by_agent["Phone"]) == {
                    "id",
                    "account",
                    "created_at",
                    "last_seen_at",
                    "expires_at",
                    "address",
                    "user_agent",
                }
                page = await laptop.get("/settings/sessions")
                assert page.status_code == 200
                assert "Phone" in page.text and "198.51.100.7" in page.text
                assert "(this browser)" in page.text
                # Revoke the phone from the console, the tablet through the API.
                phone_id = by_agent["Phone"]["id"]
                revoked = await post_form(
                    laptop, f"/settings/sessions/{phone_id}/revoke", {}, page="/settings/sessions"
                )
                assert revoked.status_code == 303
                assert not await signed_in(phone)
                gone = await laptop.delete(
                    f"/api/sessions/{by_agent['Tablet']['id']}", headers=BEARER
                )
                assert gone.status_code == 204
                assert (
                    await laptop.delete(f"/api/sessions/{phone_id}", headers=BEARER)
                ).status_code == 404
                # The API's revoke reaches this process's console within the check interval.
                deadline = time.monotonic() + 5
                while await signed_in(tablet):
                    assert time.monotonic() < deadline, "the tablet stayed signed in"
                    time.sleep(0.05)
                assert await signed_in(laptop)
                left = (await laptop.get("/api/sessions", headers=BEARER)).json()["sessions"]
                assert [s["user_agent"] for s in left] == [UA["User-Agent"]]

    run(main())


def test_a_password_change_ends_the_other_sessions(tmp_path: Path, storage_url: str) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(storage_url)) as (app, laptop):
            assert (await sign_in(laptop)).status_code == 303
            async with client_of(app, ("198.51.100.7", 4000)) as phone:
                assert (await sign_in(phone)).status_code == 303
                wrong = await post_form(
                    laptop,
                    "/settings/password",
                    {
                        "current_password": "not it at all",
                        "new_password": "a new long password",
                        "new_password_again": "a new long password",
                    },
                    page="/settings/sessions",
                )
                assert wrong.status_code == 422
                assert "That is not the current password" in wrong.text
                assert await signed_in(phone)
                changed = await post_form(
                    laptop,
                    "/settings/password",
                    {
                        "current_password": PASSWORD,
                        "new_password": "a new long password",
                        "new_password_again": "a new long password",
                    },
                    page="/settings/sessions",
                )
                assert changed.status_code == 303, changed.text[:2000]
                page = await laptop.get("/settings/sessions")
                assert "1 other session was signed out" in page.text
                assert await signed_in(laptop)
                assert not await signed_in(phone)
                assert (await sign_in(phone, PASSWORD)).status_code == 401
                assert (await sign_in(phone, "a new long password")).status_code == 303

    run(main())


def test_the_store_keeps_a_hash_of_the_token_never_the_token(
    tmp_path: Path, storage_url: str
) -> None:
    async def main() -> tuple[str, str]:
        async with in_process(tmp_path, config(storage_url)) as (app, client):
            await sign_in(client)
            store = app.state.relayhook.store
            [session] = await store.list_sessions("admin", time.time())
            key = await store.get_admin_value("session_key")
            cookie = URLSafeTimedSerializer(key, salt="relayhook-console").loads(
                client.cookies[COOKIE]
            )
            return session.id, cookie["sid"]

    session_id, token = run(main())
    if storage_url.startswith("sqlite"):
        with sqlite3.connect(storage_url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("SELECT * FROM console_sessions").fetchall()
    else:
        rows = query(storage_url, "SELECT * FROM console_sessions")
    assert len(rows) == 1 and session_id in rows[0]
    assert len(token) >= 43  # 32 random bytes
    assert token not in repr(rows)
    assert token_hash(token) in rows[0]


def test_another_process_on_the_same_database_refuses_a_revoked_cookie_within_a_second(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two apps over one PostgreSQL database: what two `relayhook serve --role web` see."""

    async def main() -> float:
        async with in_process(tmp_path, config(postgres_url)) as (_, first):
            assert (await sign_in(first)).status_code == 303
            (tmp_path / "two").mkdir()
            async with in_process(tmp_path / "two", config(postgres_url), password=None) as (
                second_app,
                _,
            ):
                async with client_of(second_app, cookies={COOKIE: first.cookies[COOKIE]}) as other:
                    assert await signed_in(other)  # the same session, seen by the other one
                    await post_form(first, "/signout", {})
                    signed_out_at = time.monotonic()
                    while await signed_in(other):
                        assert time.monotonic() - signed_out_at < 5, "never refused"
                        time.sleep(0.02)
                    return time.monotonic() - signed_out_at

    took = run(main())
    assert took <= SESSION_CHECK_SECONDS + 0.5, took


def test_a_session_token_hashes_to_its_key() -> None:
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert csrf_of('<input type="hidden" name="csrf" value="x1">') == "x1"
    assert create_app is not None
