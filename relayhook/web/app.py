"""The application factory. Collaborators are arguments, so tests and benchmarks pass their own:

    app = create_app(settings, store=store, transport=mock, clock=lambda: fixed, role="all")

Roles: `web` takes requests (ingress and API), `worker` dispatches deliveries, `all` does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from relayhook.assembly import (
    Collaborators,
    destination_policy,
    load_hooks,
    load_relays,
    new_uuid,
    open_settings_store,
    refuse_destinations,
    utc_now,
)
from relayhook.delivery.dispatcher import Dispatcher
from relayhook.delivery.http import make_http_transport
from relayhook.live import HookRegistry
from relayhook.relays import Relay
from relayhook.settings import Settings
from relayhook.ssrf import Resolver
from relayhook.store import Store
from relayhook.web.api import api_routes
from relayhook.web.ingress import Ingress

Role = Literal["web", "worker", "all"]
INGRESS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
log = logging.getLogger("relayhook")


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver | None = None,
    clock: Callable[[], datetime] = utc_now,
    new_id: Callable[[], str] = new_uuid,
    rand: random.Random | None = None,
    role: Role = "all",
    migrate: bool = True,
) -> Starlette:
    """The ASGI app. A store or transport passed in is opened and closed by its owner. An
    owned store is migrated when it opens, unless `migrate` is False (then a database that is
    behind stops the start)."""
    _, relays = load_relays(settings)
    registry = HookRegistry(load_hooks(settings))
    owned_store = store is None
    the_store = store or open_settings_store(settings)
    parts = Collaborators(the_store, registry, relays)
    policy = destination_policy(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owned_store:
            await the_store.open(migrate=migrate)
        sender = transport
        try:
            await refuse_destinations(settings, registry.hooks, policy, resolver)
            await registry.sync(the_store, clock().timestamp())
            if role in ("worker", "all"):
                sender = sender or make_http_transport(
                    policy, resolver=resolver, max_connections=settings.delivery.max_connections
                )
                parts.dispatcher = Dispatcher(
                    the_store, registry, sender, settings.secrets,
                    clock=lambda: clock().timestamp(), rand=rand or random.Random(),
                    lease_seconds=settings.delivery.lease_seconds,
                    poll_interval=settings.delivery.poll_interval,
                )
                the_store.subscribe(parts.dispatcher.notice)
                parts.tasks.append(asyncio.create_task(parts.dispatcher.run()))
            yield
        finally:
            if parts.dispatcher is not None:
                await parts.dispatcher.stop()
            for task in parts.tasks:
                task.cancel()
            await asyncio.gather(*parts.tasks, return_exceptions=True)
            if sender is not None and transport is None:
                await sender.aclose()
            if owned_store:
                await the_store.close()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "role": role})

    def relay_url(relay: Relay) -> str:
        return f"{settings.public_url()}/in/{relay.token}"

    routes = [Route("/healthz", health, methods=["GET"])]
    if role in ("web", "all"):
        ingress = Ingress(relays, the_store, settings.limits.max_body_bytes, clock, new_id,
                          registry=registry, wake=parts.wake)
        routes.append(Route("/in/{token}", ingress.handle, methods=INGRESS_METHODS))
    routes += api_routes(parts, settings.admin.token, relay_url, clock)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.relayhook = parts
    return app
