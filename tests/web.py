"""In-process web tests: the app that `create_app` builds, over a real SQLite file (or the
PostgreSQL engine), driven through `httpx.ASGITransport` on the test's event loop, with its
time, outbound transport and resolver injected. No socket, no subprocess, no worker: the app
is built with `role="web"` unless a test asks for another, so nothing here waits for the
dispatcher (a test send and a replay are the operations service's, not the worker's).

    def test_x(web_app: MakeWebApp) -> None:
        app = web_app(hooks=[{"name": "crm", "events": ["*"], "url": "https://crm.example/"}])
        app.sign_in()
        page = app.console_post("/hooks/crm/test", {})
        answer = app.api("GET", "/api/deliveries")

The lifespan runs for real (entered at start, left at close), as uvicorn would run it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unittest.mock
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from conftest import run
from servers import RelayConfig, render_config, render_hooks

from relayhook import assembly
from relayhook.assembly import Parts
from relayhook.core.connectors import Connector, load_connectors
from relayhook.passwords import PASSWORD_HASH, hash_password
from relayhook.settings import load_settings
from relayhook.store import SQLiteStore, Store
from relayhook.web.app import RelayhookApp, Role, create_app

ADMIN_TOKEN = "in-process-admin-token"
PASSWORD = "in-process password"
START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Clock:
    """The app's time: moves only when a test moves it."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class StubResolver:
    """Every name resolves to the addresses given (a public one by default): no DNS lookup."""

    def __init__(self, answers: Mapping[str, list[str]] | None = None) -> None:
        self.answers = dict(answers or {})

    async def resolve(self, host: str, port: int) -> list[str]:
        return self.answers.get(host, ["93.184.215.14"])


@dataclass
class Outbound:
    """What the hooks sent (the injected transport's record), and the answer it gives."""

    sent: list[httpx.Request] = field(default_factory=list)
    status: int = 200
    body: bytes = b"ok"

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(self.status, content=self.body)


@dataclass
class WebApp:
    app: RelayhookApp
    client: httpx.AsyncClient
    clock: Clock
    outbound: Outbound
    config_path: Path
    stack: contextlib.AsyncExitStack
    csrf: str = ""

    @property
    def parts(self) -> Parts:
        parts: Parts = self.app.state.relayhook
        return parts

    @property
    def store(self) -> Store:
        return self.parts.store

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return run(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def api(self, method: str, path: str, *, status: int = 200, **kwargs: Any) -> Any:
        """A JSON API call with the admin token; the answer's JSON (after checking `status`)."""
        response = self.request(
            method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs
        )
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    def sign_in(self) -> None:
        self.csrf = self._csrf(self.get("/signin"))
        signed = self.request("POST", "/signin", data={"password": PASSWORD, "csrf": self.csrf})
        assert signed.status_code == 303, signed.text
        self.csrf = self._csrf(self.get("/"))

    def console_post(self, path: str, form: Mapping[str, str | Sequence[str]]) -> httpx.Response:
        """A console form sent as a browser sends it; the page it leads to (redirects followed)."""
        return self.request("POST", path, data={**form, "csrf": self.csrf}, follow_redirects=True)

    @staticmethod
    def _csrf(page: httpx.Response) -> str:
        return csrf_of(page.text)

    def close(self) -> None:
        run(self.stack.aclose())


MakeWebApp = Callable[..., WebApp]


@contextlib.asynccontextmanager
async def running_app(app: RelayhookApp) -> AsyncIterator[RelayhookApp]:
    """The app with its lifespan entered, as uvicorn enters it, and left at the end (the one
    way every in-process test starts the app: this fixture, and tests/asgi.py's `in_process`)."""
    async with app.router.lifespan_context(app):
        yield app


def csrf_of(page: str) -> str:
    """The CSRF token of a console page's forms."""
    found = CSRF.search(page)
    assert found, page[:2000]
    return found.group(1)


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


_CONNECTORS: dict[tuple[object, ...], dict[str, Connector]] = {}


def cached_connectors(dirs: Sequence[Path]) -> dict[str, Connector]:
    """load_connectors, once per test process for the same files (compiling the shipped
    connectors' templates takes most of an app's build); a file changed is loaded again."""
    key = tuple(
        (
            str(folder),
            tuple(
                sorted(
                    (str(path), path.stat().st_mtime_ns, path.stat().st_size)
                    for path in folder.rglob("*")
                    if path.is_file()
                )
            ),
        )
        for folder in map(Path, dirs)
        if folder.is_dir()
    )
    if key not in _CONNECTORS:
        _CONNECTORS[key] = load_connectors(dirs)
    return dict(_CONNECTORS[key])


def build_web_app(
    tmp_path: Path,
    *,
    relays: Sequence[RelayConfig] = (),
    hooks: Sequence[Mapping[str, Any]] = (),
    store: Store | None = None,
    role: Role = "web",
    resolver: Any = None,
    **sections: dict[str, Any],
) -> WebApp:
    """The app over `tmp_path/relayhook.db` (or `store`, opened and closed by the caller), its
    lifespan entered; the console's password is PASSWORD."""
    text = render_config(relays=relays, admin_token=ADMIN_TOKEN, **sections)
    text += render_hooks([dict(hook) for hook in hooks])
    config_path = tmp_path / "relayhook.toml"
    config_path.write_text(text, encoding="utf-8")
    clock, outbound = Clock(), Outbound()
    own_store = store is None
    the_store = store if store is not None else SQLiteStore(tmp_path / "relayhook.db")
    with unittest.mock.patch.object(assembly, "load_connectors", cached_connectors):
        app = create_app(
            load_settings(config_path),
            store=the_store,
            role=role,
            clock=clock,
            transport=httpx.MockTransport(outbound.handle),
            resolver=resolver or StubResolver(),
        )

    async def start() -> WebApp:
        stack = contextlib.AsyncExitStack()
        if own_store:
            await the_store.open()
            stack.push_async_callback(the_store.close)
        # Hashed once per test process (argon2 is slow on purpose), stored before the console
        # starts, so that it makes none up.
        await the_store.set_admin_value(
            PASSWORD_HASH, password_hash(), clock().timestamp(), replace=False
        )
        await stack.enter_async_context(running_app(app))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        stack.push_async_callback(client.aclose)
        return WebApp(app, client, clock, outbound, config_path, stack)

    return run(start())


@contextlib.contextmanager
def web_apps(tmp_path: Path) -> Iterator[MakeWebApp]:
    """`make(**kwargs)` builds apps as build_web_app does; each is closed at the end."""
    made: list[WebApp] = []

    def make(**kwargs: Any) -> WebApp:
        made.append(build_web_app(tmp_path, **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for app in made:
            app.close()
