"""Operations endpoints and background work: health, readiness, metrics, retention.

    GET /healthz   200 {"status": "ok"} while the process answers
    GET /readyz    200 {"status": "ready"}, or 503 {"status": "not ready", "failing": [...]}:
                   the store takes writes, its schema is current, the spool drains
    GET /metrics   the Prometheus text format, behind the admin bearer token unless
                   [metrics] public = true

/healthz and /readyz need no token and say nothing an attacker could use (no versions, paths or
error texts: those go to the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relayhook.assembly import prune_now
from relayhook.metrics import CONTENT_TYPE, Metrics
from relayhook.settings import RetentionSettings
from relayhook.store import PruneResult, Store, StoreError
from relayhook.store.base import MaintenanceStore
from relayhook.web.api import refuse_bearer

log = logging.getLogger("relayhook.web.ops")

PROBE_SECONDS = 1.0  # a readiness probe waits this long for the store's write lock
SPOOL_STUCK_SECONDS = 60.0  # a spool that holds requests and has not shrunk for this long
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Readiness:
    """Whether this process can do its work now. One write probe at a time: a probe still
    waiting for the lock is shared by the checks that come meanwhile."""

    store: MaintenanceStore
    spool_depth: Callable[[], int] = lambda: 0
    clock: Callable[[], float] = time.monotonic
    probe_seconds: float = PROBE_SECONDS
    stuck_seconds: float = SPOOL_STUCK_SECONDS
    _probe: asyncio.Future[None] | None = field(default=None, init=False)
    _spool: tuple[int, float] = field(default=(0, 0.0), init=False)

    async def failing(self) -> list[str]:
        """The names of the failing checks: "store", "schema", "spool"; empty when ready."""
        failing = []
        if not await self._store_writes():
            failing.append("store")
        elif not await self._schema_current():
            failing.append("schema")
        if not self._spool_drains():
            failing.append("spool")
        return failing

    async def _store_writes(self) -> bool:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self.store.probe_write())
            self._probe.add_done_callback(_retrieve)
        try:
            await asyncio.wait_for(asyncio.shield(self._probe), self.probe_seconds)
        except (StoreError, TimeoutError) as exc:
            log.warning("readiness: the store takes no writes now: %s",
                        exc or f"no write lock within {self.probe_seconds:g} s")
            return False
        return True

    async def _schema_current(self) -> bool:
        try:
            current = await self.store.schema_current()
        except StoreError as exc:
            log.warning("readiness: cannot read the schema version: %s", exc)
            return False
        if not current:
            log.warning("readiness: the store's schema is not this version's: relayhook migrate")
        return current

    def _spool_drains(self) -> bool:
        depth, now = self.spool_depth(), self.clock()
        last_depth, since = self._spool
        if depth == 0 or depth < last_depth or last_depth == 0:
            self._spool = (depth, now)  # empty, or shrinking, or just started to fill
            return True
        if depth > last_depth:
            self._spool = (depth, since)
        if now - since < self.stuck_seconds:
            return True
        log.warning("readiness: the spool has held %d requests for %.0f s without draining",
                    depth, now - since)
        return False


def _retrieve(future: asyncio.Future[None]) -> None:
    """Take a finished probe's exception, so none is reported as never retrieved."""
    if not future.cancelled():
        future.exception()


def ops_routes(store: Store, metrics: Metrics, readiness: Readiness, *, admin_token: str,
               public_metrics: bool, clock: Callable[[], datetime]) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        failing = await readiness.failing()
        if failing:
            return JSONResponse({"status": "not ready", "failing": failing}, 503)
        return JSONResponse({"status": "ready"})

    async def metrics_text(request: Request) -> Response:
        if not public_metrics:
            refused = refuse_bearer(request, admin_token, "set [admin] token, or [metrics] "
                                    "public = true")
            if refused is not None:
                return refused
        await metrics.refresh(store, clock().timestamp())
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]


async def prune_periodically(store: MaintenanceStore, retention: RetentionSettings,
                             clock: Callable[[], datetime],
                             sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Prune what `[retention]` lets go now, then every `interval` seconds, until cancelled.
    A failure is logged and tried again at the next round."""
    while True:
        try:
            result = await prune_now(store, retention, clock().timestamp())
        except StoreError as exc:
            log.error("retention: the prune failed (tried again in %g s): %s",
                      retention.interval, exc)
        else:
            if result != PruneResult():
                log.info("retention: pruned %d requests, %d events, %d deliveries, %d attempts",
                         result.requests, result.events, result.deliveries, result.attempts)
        await sleep(retention.interval)
