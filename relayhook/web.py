"""The application factory. Collaborators are arguments, so tests and benchmarks pass their own:

    app = create_app(settings, store=store, clock=lambda: fixed, new_id=counter)
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from relayhook.api import api_routes
from relayhook.connectors import SHIPPED_DIR, Connector, load_connectors
from relayhook.ingress import Ingress
from relayhook.relays import Relay, build_relays
from relayhook.settings import Settings
from relayhook.store import Store, open_store

INGRESS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


def load_relays(settings: Settings) -> tuple[dict[str, Connector], dict[str, Relay]]:
    """The connectors (shipped, then the config's folders) and the relays bound to them."""
    connectors = load_connectors([SHIPPED_DIR, *settings.connector_dirs()])
    return connectors, build_relays(settings.relays, connectors, settings.config_file)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Callable[[], datetime] = utc_now,
    new_id: Callable[[], str] = new_uuid,
) -> Starlette:
    """The ASGI app. A store passed in is opened and closed by its owner, not by the app."""
    _, relays = load_relays(settings)
    owned = store is None
    the_store = store or open_store(
        settings.storage.url, base_dir=settings.config_dir,
        synchronous=settings.storage.synchronous,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owned:
            await the_store.open()
        try:
            yield
        finally:
            if owned:
                await the_store.close()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    ingress = Ingress(relays, the_store, settings.limits.max_body_bytes, clock, new_id)

    def relay_url(relay: Relay) -> str:
        return f"{settings.public_url()}/in/{relay.token}"

    routes = [
        Route("/in/{token}", ingress.handle, methods=INGRESS_METHODS),
        Route("/healthz", health, methods=["GET"]),
        *api_routes(the_store, relays, settings.admin.token, relay_url),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = the_store
    app.state.relays = relays
    return app
