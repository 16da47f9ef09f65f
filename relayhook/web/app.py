"""The application factory. Collaborators are arguments, so tests (tests/web.py) and
benchmarks pass their own:

    app = create_app(settings, store=store, transport=mock, clock=lambda: fixed, role="all")

`transport` carries every outbound request: the dispatcher's and the test sends'.

Roles: `web` takes requests (ingress, API and console), `worker` dispatches deliveries, `all`
does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Literal

import httpx
import orjson
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from relayhook.assembly import (
    Parts,
    assemble,
    new_uuid,
    refuse_destinations,
    spool_path,
    utc_now,
)
from relayhook.core.ssrf import Resolver
from relayhook.delivery.alerts import Alerter, alert_channels
from relayhook.delivery.dispatcher import Dispatcher
from relayhook.delivery.http import make_http_transport
from relayhook.delivery.watch import QuietWatch
from relayhook.intake import Intake, SpoolDrainer
from relayhook.metrics import Metrics
from relayhook.people import People, invite_mailer
from relayhook.settings import Settings
from relayhook.shapewatch import ShapeWatch
from relayhook.spool import Spool
from relayhook.store import Store
from relayhook.tracing import start_tracing, stop_tracing
from relayhook.web.access import Access, enforce
from relayhook.web.api import api_routes
from relayhook.web.config_api import config_api_routes
from relayhook.web.console import Console, console_routes
from relayhook.web.diff_api import diff_api_routes
from relayhook.web.erase_api import erase_api_routes
from relayhook.web.ingress import Answer, Ingress, ingress_token, refusal
from relayhook.web.ops import Readiness, ops_routes, prune_periodically
from relayhook.web.people_api import describe, live_secrets, people_api_routes
from relayhook.web.samples_api import samples_api_routes
from relayhook.web.sessions_api import sessions_api_routes

Role = Literal["web", "worker", "all"]
FOLLOW_INTERVAL = 0.5  # seconds: a change made in another process shows here within this
log = logging.getLogger("relayhook")


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
    span_exporter: Any = None,
) -> RelayhookApp:
    """The ASGI app. A store or transport passed in is opened and closed by its owner. An
    owned store is migrated when it opens, unless `migrate` is False (then a database that is
    behind stops the start)."""
    owned_store = store is None
    parts = assemble(settings, store=store, resolver=resolver,
                     clock=lambda: clock().timestamp(), transport=transport, new_id=new_id)
    the_store, live = parts.store, parts.live
    takes_requests = role in ("web", "all")
    parts.spool = Spool(spool_path(settings)) if takes_requests else None
    metrics = Metrics(spool_depth=lambda: parts.spool.depth if parts.spool else 0)
    intake = Intake(the_store, live, new_id, spool=parts.spool,
                    store_timeout=settings.spool.store_timeout, wake=parts.wake,
                    stored=metrics.observe_stored, secrets=settings.template_secrets(),
                    explain=settings.outcomes.record,
                    render_seconds=settings.limits.render_seconds)
    # [tracing] on (relayhook[otel]); `span_exporter`: where spans go instead of OTLP (tests).
    tracing = parts.tracing = start_tracing(settings, span_exporter)
    intake.tracing = tracing
    people = People(the_store, clock=lambda: clock().timestamp(), new_id=new_id,
                    admin_token=settings.admin.token,
                    secrets_to_hide=lambda: live_secrets(parts),
                    mailer=invite_mailer(settings), public_url=settings.public_url())
    console = (Console(parts, clock=clock, new_id=new_id, people=people) if takes_requests
               else None)
    shapes = None
    if takes_requests and settings.watch.shapes:
        shapes = ShapeWatch(the_store, live, clock=lambda: clock().timestamp())
        intake.observe = shapes.note

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owned_store:
            await the_store.open(migrate=migrate)
        sender = transport
        try:
            await refuse_destinations(settings, live.hooks, parts.policy, resolver)
            await live.sync(the_store, clock().timestamp())
            if parts.spool is not None:  # what a crash left in it is stored from now on
                parts.spool.open()
                drainer = SpoolDrainer(intake, parts.spool, live.relay_named)
                intake.spooled = drainer.wake
                parts.tasks.append(asyncio.create_task(drainer.run()))
            if console is not None:
                await console.start()
            if shapes is not None:
                parts.tasks.append(asyncio.create_task(shapes.run()))
            if role in ("worker", "all"):
                sender = sender or make_http_transport(
                    parts.policy, resolver=resolver,
                    max_connections=settings.delivery.max_connections,
                )
                parts.dispatcher = Dispatcher(
                    the_store, live, sender, settings.template_secrets(),
                    clock=lambda: clock().timestamp(), rand=rand or random.Random(),
                    lease_seconds=settings.delivery.lease_seconds,
                    poll_interval=settings.delivery.poll_interval,
                    report=metrics.observe_delivery,
                    disable_after=settings.alerts.disable_after, tracing=tracing,
                )
                the_store.subscribe(parts.dispatcher.notice)
                parts.tasks.append(asyncio.create_task(parts.dispatcher.run()))
                channels = alert_channels(settings.alerts, sender, settings.server.public_url)
                if channels:
                    alerter = Alerter(the_store, channels, settings.alerts.interval)
                    parts.tasks.append(asyncio.create_task(alerter.run()))
                if settings.watch.interval > 0:
                    watch = QuietWatch(the_store, lambda: live.relays.values(), settings.watch,
                                       clock=lambda: clock().timestamp())
                    parts.tasks.append(asyncio.create_task(watch.run()))
                if settings.retention.interval > 0:
                    parts.tasks.append(asyncio.create_task(
                        prune_periodically(the_store, settings.retention, clock)))
            else:  # the dispatcher keeps a worker's copy fresh; a web process polls itself
                parts.tasks.append(asyncio.create_task(follow_changes(parts)))
            yield
        finally:
            if parts.dispatcher is not None:
                await parts.dispatcher.stop()
            for task in parts.tasks:
                task.cancel()
            await asyncio.gather(*parts.tasks, return_exceptions=True)
            if sender is not None and transport is None:
                await sender.aclose()
            await parts.operations.aclose()
            if owned_store:
                await the_store.close()
            if parts.spool is not None:
                parts.spool.close()
            if tracing is not None:
                await asyncio.to_thread(stop_tracing, tracing)

    readiness = Readiness(the_store, spool_depth=metrics.spool_depth_now)
    routes: list[BaseRoute] = [*ops_routes(the_store, metrics, readiness,
                                           admin_token=settings.admin.token,
                                           public_metrics=settings.metrics.public, clock=clock)]
    routes += api_routes(parts, settings.admin.token, clock)
    routes += samples_api_routes(parts, settings.admin.token, clock)
    routes += config_api_routes(parts, settings.admin.token)
    routes += sessions_api_routes(the_store, settings.admin.token, clock)
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
    app.metrics = metrics
    if takes_requests:
        app.ingress = Ingress(live, the_store, settings.limits.max_body_bytes, clock, new_id,
                              wake=parts.wake, intake=intake, observe=metrics.observe_request)
    app.state.relayhook = parts
    app.state.people = people
    return app


async def follow_changes(parts: Parts, interval: float = FOLLOW_INTERVAL) -> None:
    """Apply what another process changed (a relay created, a hook edited, a 410 seen by a
    worker): at once when the store tells (PostgreSQL's NOTIFY), else by polling the config
    version every `interval`. A store failure is logged and tried again."""
    changed = asyncio.Event()
    parts.store.subscribe(lambda topic: changed.set() if topic == "config" else None)
    while True:
        changed.clear()
        try:
            await parts.live.refresh(parts.store)
        except Exception:
            log.exception("cannot read the live configuration; trying again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), interval)
