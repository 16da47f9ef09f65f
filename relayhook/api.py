"""The read-only JSON API behind `Authorization: Bearer <admin token>`.

    GET /api/requests?relay=&status=&limit=&before=   raw requests, newest first, with event_ids
    GET /api/events?relay=&type=&subject=&request=&limit=&before=   events, with request_id
    GET /api/relays                                    relays, their URLs and refused requests
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relayhook.relays import Relay
from relayhook.store import REQUEST_STATUSES, RequestRecord, Store

MAX_LIMIT = 1000
Endpoint = Callable[[Request], Awaitable[Response]]


class BadQuery(Exception):
    pass


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def request_json(record: RequestRecord) -> dict[str, Any]:
    try:
        body: str = record.body.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(record.body).decode("ascii"), "base64"
    return {
        "id": record.id,
        "relay": record.relay,
        "received_at": record.received_at,
        "status": record.status,
        "error": record.error,
        "method": record.method,
        "query": record.query,
        "headers": [list(pair) for pair in record.headers],
        "body": body,
        "body_encoding": encoding,
        "truncated": record.truncated,
        "event_ids": list(record.event_ids),
    }


def api_routes(
    store: Store, relays: dict[str, Relay], token: str, relay_url: Callable[[Relay], str]
) -> list[Route]:
    def guarded(handler: Callable[[Request], Awaitable[Any]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            if not token:
                return JSONResponse({"error": "the API is off: set [admin] token"}, 403)
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "missing or wrong bearer token"}, 401,
                                    headers={"WWW-Authenticate": 'Bearer realm="relayhook"'})
            try:
                return JSONResponse(await handler(request))
            except BadQuery as exc:
                return JSONResponse({"error": str(exc)}, 400)

        return endpoint

    async def list_requests(request: Request) -> dict[str, Any]:
        status = request.query_params.get("status")
        if status is not None and status not in REQUEST_STATUSES:
            raise BadQuery(f"status must be one of {', '.join(REQUEST_STATUSES)}")
        records = await store.list_requests(
            relay=request.query_params.get("relay"),
            status=status,
            limit=_limit(request),
            before=request.query_params.get("before"),
        )
        return {"items": [request_json(record) for record in records]}

    async def list_events(request: Request) -> dict[str, Any]:
        params = request.query_params
        events = await store.list_events(
            relay=params.get("relay"), type=params.get("type"), subject=params.get("subject"),
            request_id=params.get("request"), limit=_limit(request), before=params.get("before"),
        )
        return {"items": [{**e.to_cloudevent(), "request_id": e.request_id} for e in events]}

    async def list_relays(request: Request) -> dict[str, Any]:
        failures = await store.auth_failures()
        return {"items": [
            {
                "name": relay.name,
                "connector": relay.connector.id,
                "url": relay_url(relay),
                "auth_failures": failures.get(relay.name, (0, None))[0],
                "last_auth_failure": failures.get(relay.name, (0, None))[1],
            }
            for relay in relays.values()
        ]}

    return [
        Route("/api/requests", guarded(list_requests), methods=["GET"]),
        Route("/api/events", guarded(list_events), methods=["GET"]),
        Route("/api/relays", guarded(list_relays), methods=["GET"]),
    ]
