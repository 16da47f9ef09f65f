"""Operations endpoints: health, readiness, metrics.

    GET /healthz   200 {"status": "ok"} while the process answers
    GET /readyz    200 {"status": "ready"}, or 503 {"status": "not ready", "failing": [...],
                   "reasons": {check: why}}: the store takes writes, its schema is current, the
                   spool drains, the dispatcher claims, the disk has room (relayhook.readiness)
    GET /metrics   the Prometheus text format, behind the admin bearer token unless
                   [metrics] public = true

/healthz and /readyz need no token and say nothing an attacker could use (no versions, paths or
error texts: those go to the log).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relayhook.metrics import CONTENT_TYPE, Metrics
from relayhook.readiness import Readiness
from relayhook.store import Store
from relayhook.web.api import refuse_bearer

Endpoint = Callable[[Request], Awaitable[Response]]


def ops_routes(
    store: Store,
    metrics: Metrics,
    readiness: Readiness,
    *,
    admin_token: str,
    public_metrics: bool,
    clock: Callable[[], datetime],
) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        failing = await readiness.check()
        if failing:
            return JSONResponse(
                {"status": "not ready", "failing": list(failing), "reasons": failing}, 503
            )
        return JSONResponse({"status": "ready"})

    async def metrics_text(request: Request) -> Response:
        if not public_metrics:
            refused = refuse_bearer(
                request, admin_token, "set [admin] token, or [metrics] public = true"
            )
            if refused is not None:
                return refused
        await metrics.refresh(store, clock().timestamp())
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]
