"""Issue 20, item 5: sign-in with OpenID Connect, against a small provider run on 127.0.0.1
(tests/oidc_provider.py): someone new gets an account with `[auth.oidc] role`, a known e-mail
signs in as its account, a domain not allowed, an unverified e-mail, a forged ID token, a wrong
state and a disabled account are refused; every outcome is in the audit log, and the client
secret is nowhere in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asgi import TOKEN, client_of, in_process
from oidc_provider import OidcProvider
from servers import render_config

SECRET = "oidc-client-secret-canary-5e1"


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with OidcProvider("relayhook", SECRET) as running:
        yield running


def config(tmp_path: Path, provider: OidcProvider, **oidc: object) -> str:
    return render_config(
        relays=[],
        admin_token=TOKEN,
        storage_url=f"sqlite:///{tmp_path / 'relayhook.db'}",
        server={"public_url": "http://127.0.0.1:8080"},
        **{
            "auth.oidc": {
                "issuer": provider.url,
                "client_id": "relayhook",
                "client_secret": SECRET,
                "role": "operator",
                "allowed_domains": ["example.com"],
                **oidc,
            }
        },
    )


async def through_provider(client: httpx.AsyncClient, next_page: str = "/hooks") -> httpx.Response:
    """Click "Sign in with ...": to the provider and back, as a browser follows redirects."""
    started = await client.get(f"/signin/oidc?next={next_page}")
    assert started.status_code == 303, started.text
    async with httpx.AsyncClient() as outside:
        at_provider = await outside.get(started.headers["location"])
    assert at_provider.status_code == 302
    back = httpx.URL(at_provider.headers["location"])
    return await client.get(f"{back.path}?{back.query.decode()}")


def test_someone_new_signs_in_and_gets_the_configured_role(
    tmp_path: Path, provider: OidcProvider
) -> None:
    import asyncio

    async def main() -> None:
        provider.user = {"email": "Ana@Example.com", "email_verified": True, "name": "Ana"}
        async with in_process(tmp_path, config(tmp_path, provider)) as (app, client):
            page = await client.get("/signin")
            assert "Sign in with your company account" in page.text
            back = await through_provider(client)
            assert back.status_code == 303 and back.headers["location"] == "/hooks"
            assert (await client.get("/hooks")).status_code == 200
            store = app.state.relayhook.store
            account = await store.find_account("ana@example.com")
            assert account.role == "operator" and account.origin == "oidc"
            assert account.password_hash is None

            async with client_of(app) as again:  # the same person later: the same account
                assert (await through_provider(again)).status_code == 303
            assert len([a for a in await store.list_accounts() if a.origin == "oidc"]) == 1

            lines = await store.list_audit()
            assert [(e.action, e.actor_name) for e in lines if e.action.startswith("signin")] == [
                ("signin.success", "Ana"),
                ("signin.success", "Ana"),
            ]
            assert SECRET not in repr(lines)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("user", "tamper", "said"),
    [
        pytest.param(
            {"email": "eve@elsewhere.org", "email_verified": True},
            False,
            "cannot sign in here",
            id="a domain not allowed",
        ),
        pytest.param(
            {"email": "bob@example.com", "email_verified": False},
            False,
            "no verified e-mail",
            id="an unverified e-mail",
        ),
        pytest.param(
            {"email": "bob@example.com", "email_verified": True},
            True,
            "could not be verified",
            id="an ID token signed with another key",
        ),
    ],
)
def test_refused(
    tmp_path: Path, provider: OidcProvider, user: dict[str, object], tamper: bool, said: str
) -> None:
    import asyncio

    async def main() -> None:
        provider.user, provider.tamper = user, tamper
        async with in_process(tmp_path, config(tmp_path, provider)) as (app, client):
            back = await through_provider(client)
            assert back.status_code == 303 and back.headers["location"] == "/signin"
            page = await client.get("/signin")
            assert said in page.text.replace("&#39;", "'")
            assert (await client.get("/hooks")).status_code == 303
            assert await app.state.relayhook.store.list_accounts() == [
                a for a in await app.state.relayhook.store.list_accounts() if a.id == "admin"
            ]
            lines = await app.state.relayhook.store.list_audit()
            assert any(
                e.action == "signin.failure" and e.detail.get("via") == "oidc" for e in lines
            )

    asyncio.run(main())


def test_a_wrong_state_and_a_disabled_account_are_refused(
    tmp_path: Path, provider: OidcProvider
) -> None:
    import asyncio

    async def main() -> None:
        provider.user = {"email": "ana@example.com", "email_verified": True}
        async with in_process(tmp_path, config(tmp_path, provider)) as (app, client):
            started = await client.get("/signin/oidc")
            async with httpx.AsyncClient() as outside:
                at_provider = await outside.get(started.headers["location"])
            back = httpx.URL(at_provider.headers["location"])
            forged = await client.get(f"{back.path}?code={back.params['code']}&state=guessed")
            assert forged.headers["location"] == "/signin"
            assert (await client.get("/hooks")).status_code == 303

            assert (await through_provider(client)).headers["location"] == "/hooks"
            people = app.state.people
            ana = await app.state.relayhook.store.find_account("ana@example.com")
            await people.set_disabled(ana.id, True)
            async with client_of(app) as later:
                assert (await through_provider(later)).headers["location"] == "/signin"
                assert "disabled" in (await later.get("/signin")).text

    asyncio.run(main())
