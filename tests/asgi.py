"""The web app in process, for async tests that write their own config and need several
clients (browsers) or a peer address: built on tests/web.py's `running_app` (the `web_app`
fixture there is the way for the rest).

    async with in_process(tmp_path, config_toml, resolver=stub) as (app, client):
        await client.post("/api/hooks", json=..., headers=BEARER)

`peer` is the socket address the app sees (scope["client"]), for the forwarded-address tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from web import csrf_of, running_app

from relayhook.passwords import set_password
from relayhook.settings import load_settings
from relayhook.web.app import RelayhookApp, create_app

PASSWORD = "correct horse battery staple"
TOKEN = "in-process-admin-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.asynccontextmanager
async def in_process(
    workdir: Path,
    config: str,
    *,
    peer: tuple[str, int] = ("127.0.0.1", 50000),
    password: str | None = PASSWORD,
    **kwargs: Any,
) -> AsyncIterator[tuple[RelayhookApp, httpx.AsyncClient]]:
    """The app over `config` (TOML written to workdir/relayhook.toml), started, with a client;
    the console's password is set to `password` (None: left as the store has it)."""
    path = workdir / "relayhook.toml"
    path.write_text(config, encoding="utf-8")
    app = create_app(load_settings(path), **kwargs)
    async with running_app(app):
        if password is not None:
            await set_password(app.state.relayhook.store, password, 0.0)
        async with client_of(app, peer) as client:
            yield app, client


def client_of(
    app: RelayhookApp, peer: tuple[str, int] = ("127.0.0.1", 50000), **kwargs: Any
) -> httpx.AsyncClient:
    """Another browser of the same app (its own cookies), from `peer`."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=peer),
        base_url="http://127.0.0.1:8080",
        **kwargs,
    )


async def sign_in(
    client: httpx.AsyncClient, password: str = PASSWORD, **headers: str
) -> httpx.Response:
    """GET the sign-in page (its CSRF token), post the password; the answer (303 when right)."""
    page = await client.get("/signin")
    return await client.post(
        "/signin", data={"csrf": csrf_of(page.text), "password": password}, headers=headers
    )


async def post_form(
    client: httpx.AsyncClient, path: str, data: dict[str, Any], page: str = "/"
) -> httpx.Response:
    """A console form post with the CSRF token of `page` (as a browser sends it)."""
    token = csrf_of((await client.get(page)).text)
    return await client.post(path, data={"csrf": token, **data})
