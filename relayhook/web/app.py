"""The application factory: the routes. Collaborators are arguments, so tests (tests/web.py)
and benchmarks pass their own:

    app = create_app(settings, store=store, transport=mock, clock=lambda: fixed, role="all")

`transport` carries every outbound request: the dispatcher's and the test sends'.

Roles: `web` takes requests (ingress, API and console), `worker` dispatches deliveries and
answers only /healthz, /readyz and /metrics, `all` does both. The background tasks are the
runtime's (relayhook.runtime): `relayhook serve` runs them itself and passes `runtime`; without
it (`uvicorn app:app`, tests) the app's lifespan opens the store and runs a runtime for `role`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from relayhook.assembly import Role, assemble, new_uuid, utc_now
from relayhook.core.ssrf import Resolver
from relayhook.metrics import Metrics
from relayhook.people import People, invite_mailer
from relayhook.runtime import Runtime
from relayhook.settings import Settings
from relayhook.store import Store
from relayhook.web.access import Access, enforce
from relayhook.web.api import api_routes
from relayhook.web.config_api import config_api_routes
from relayhook.web.console import Console, console_routes
from relayhook.web.diff_api import diff_api_routes
from relayhook.web.erase_api import erase_api_routes
from relayhook.web.ingress import Answer, Ingress, ingress_token, refusal
from relayhook.web.ops import ops_routes
from relayhook.web.people_api import describe, live_secrets, people_api_routes
from relayhook.web.samples_api import samples_api_routes
from relayhook.web.sessions_api import sessions_api_routes

__all__ = ["Role", "RelayhookApp", "create_app"]


class RelayhookApp(Starlette):
    """Starlette, with `/in/{token}` answered ahead of its middleware and router: the ingress
    is a plain ASGI handler (see web/ingress.py), everything else is routed as usual."""

    ingress: Ingress | None = None
    metrics: Metrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = refusal(scope) if scope["type"] == "http" else None
        if refused is not None and self.metrics is not None:
            self.metrics.headers_refused.labels(str(refused[0])).inc()
        if self.ingress is not None and (token := ingress_token(scope)) is not None:
            await self.ingress.serve(token, scope, receive, send)
        elif refused is not None:  # not a relay URL: nothing to keep
            await Answer(refused[0], orjson.dumps({"error": refused[1]})).send(send)
        else:
            await super().__call__(scope, receive, send)


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
    runtime: Runtime | None = None,
    span_exporter: Any = None,
) -> RelayhookApp:
    """The ASGI app. With `runtime` (over its assembled parts), the caller has opened the
    store and runs the runtime's tasks: the app only routes. Without, the app assembles the
    parts for `role` and its lifespan runs a runtime over them; a store or transport passed in
    is opened and closed by its owner, an owned store is migrated when it opens unless
    `migrate` is False (then a database that is behind stops the start). `span_exporter`:
    where spans go instead of OTLP with [tracing] on (tests)."""
    hosted = runtime is None
    if runtime is None:
        parts = assemble(
            settings,
            role=role,
            store=store,
            resolver=resolver,
            clock=lambda: clock().timestamp(),
            transport=transport,
            new_id=new_id,
            span_exporter=span_exporter,
        )
        runtime = Runtime(parts, transport=transport, resolver=resolver, clock=clock, rand=rand)
    parts = runtime.parts
    people = People(
        parts.store,
        clock=lambda: clock().timestamp(),
        new_id=new_id,
        admin_token=settings.admin.token,
        secrets_to_hide=lambda: live_secrets(parts),
        mailer=invite_mailer(settings),
        public_url=settings.public_url(),
    )
    console = (
        Console(parts, clock=clock, new_id=new_id, people=people) if parts.takes_requests else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if hosted:
                await stack.enter_async_context(
                    runtime.running(migrate=migrate, open_store=store is None)
                )
            if console is not None:
                await console.start()
            yield

    routes: list[BaseRoute] = [
        *ops_routes(
            parts.store,
            parts.metrics,
            runtime.readiness,
            admin_token=settings.admin.token,
            public_metrics=settings.metrics.public,
            clock=clock,
        )
    ]
    if parts.takes_requests:  # a worker answers no admin API, and no console
        routes += api_routes(parts, settings.admin.token, clock)
        routes += samples_api_routes(parts, settings.admin.token, clock)
        routes += config_api_routes(parts, settings.admin.token)
        routes += sessions_api_routes(parts.store, settings.admin.token, clock)
        routes += diff_api_routes(parts, settings.admin.token)
        routes += erase_api_routes(parts, settings.admin.token)
        routes += people_api_routes(people, clock)
    access = Access(people, describe=lambda kind, name: describe(parts, kind, name))
    if console is not None:
        routes += console_routes(console)
        access.session_account = console.gate.account_of
        access.forbidden_page = console.forbidden
        access.address_of = console.gate.address_of
    app = RelayhookApp(routes=enforce(routes, access), lifespan=lifespan)
    if parts.takes_requests:
        app.ingress = Ingress(
            parts.live,
            parts.store,
            settings.limits.max_body_bytes,
            clock,
            new_id,
            wake=parts.wake,
            intake=parts.intake,
            observe=parts.metrics.observe_request,
        )
    app.metrics = parts.metrics
    app.state.relayhook = parts
    app.state.runtime = runtime
    app.state.people = people
    return app
