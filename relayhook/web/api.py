"""The JSON API behind `Authorization: Bearer <admin token>`: what was received and sent.

    GET  /api/requests?relay=&status=&text=&limit=&before=  raw requests, with event_ids
    GET  /api/events?relay=&type=&subject=&request=&limit=&before=   events, with request_id
    GET  /api/deliveries?hook=&status=a,b&min_code=&max_code=&since=&until=&text=&request=
                        &event=&limit=&before=
    GET  /api/deliveries/{id}                              a delivery, its event and attempts
    POST /api/deliveries/{id}/replay                       send it again
    POST /api/hooks/{name}/replay?status=dead[,failed]&since=   send a hook's deliveries again
    GET  /api/problems?hook=&relay=&status=open,acknowledged,resolved&limit=   failures grouped,
                                                           a relay gone quiet or changed shape
    POST /api/problems/{id}/acknowledge                    someone is on it
    POST /api/problems/{id}/replay                         Replay affected: its deliveries again

Relays, hooks and connectors (read and written) are in relayhook.web.config_api.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relayhook.assembly import Parts
from relayhook.core.events import parse_time
from relayhook.core.problems import problem_json
from relayhook.core.records import PROBLEM_STATUSES, DeliveryFilter
from relayhook.core.tomlpos import format_path
from relayhook.errors import ConflictError, FindingsError, InvalidError, NotFoundError
from relayhook.explain import hook_skips, request_outcomes
from relayhook.store import REQUEST_STATUSES, RequestRecord
from relayhook.web.readmodel import (
    FilterError,
    attempt_json,
    delivery_filter,
    delivery_json,
    request_json,
)

MAX_LIMIT = 1000
Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request], Awaitable[dict[str, Any] | Response]]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def _one_of(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if value is not None and value not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def refuse_bearer(request: Request, token: str, off: str) -> JSONResponse | None:
    """None if the request carries `Authorization: Bearer <token>`, else the answer: 403
    saying `off` when no token is set, 401 otherwise."""
    if not token:
        return JSONResponse({"error": off}, 403)
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return JSONResponse(
            {"error": "missing or wrong bearer token"},
            401,
            headers={"WWW-Authenticate": 'Bearer realm="relayhook"'},
        )
    return None


def guard(token: str = "") -> Callable[[Handler], Endpoint]:
    """Wrap a handler of a route that relayhook.web.access lets through only with a bearer
    token (the `[admin] token` or an API key) whose role the policy table allows. A handler
    returns a dict (answered 200) or a Response; the errors of relayhook.errors become their
    status with a JSON body: InvalidError 422 with each problem at its field, NotFoundError
    404, ConflictError 409."""

    def guarded(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            if request.scope.get("principal") is None:  # relayhook.web.access refuses first
                return JSONResponse({"error": "missing or wrong bearer token"}, 401)
            try:
                answer = await handler(request)
            except ApiError as exc:
                return JSONResponse({"error": str(exc)}, exc.status)
            except InvalidError as exc:
                errors = [{"field": format_path(e.key), "message": e.message} for e in exc.errors]
                body: dict[str, Any] = {"error": str(exc), "errors": errors}
                if isinstance(exc, FindingsError):
                    body["findings"] = exc.findings
                return JSONResponse(body, 422)
            except NotFoundError as exc:
                return JSONResponse({"error": str(exc)}, 404)
            except ConflictError as exc:
                return JSONResponse({"error": str(exc)}, 409)
            return answer if isinstance(answer, Response) else JSONResponse(answer)

        return endpoint

    return guarded


def api_routes(parts: Parts, token: str, clock: Callable[[], datetime]) -> list[Route]:
    store, manager, operations = parts.store, parts.manager, parts.operations
    guarded = guard(token)

    def hook_named(request: Request) -> str:
        name: str = request.path_params["name"]
        return manager.hook(name).name

    async def list_requests(request: Request) -> dict[str, Any]:
        status = _one_of(request.query_params.get("status"), REQUEST_STATUSES, "status")
        records = await store.list_requests(
            relay=request.query_params.get("relay"),
            status=status,  # type: ignore[arg-type]
            limit=_limit(request),
            before=request.query_params.get("before"),
            text=request.query_params.get("text") or None,
        )
        return {"items": [request_json(record) for record in records]}

    async def list_events(request: Request) -> dict[str, Any]:
        params = request.query_params
        events = await store.list_events(
            relay=params.get("relay"),
            type=params.get("type"),
            subject=params.get("subject"),
            request_id=params.get("request"),
            limit=_limit(request),
            before=params.get("before"),
        )
        return {"items": [{**e.to_cloudevent(), "request_id": e.request_id} for e in events]}

    async def list_deliveries(request: Request) -> dict[str, Any]:
        params = request.query_params
        try:
            where = delivery_filter(params, params.getlist("status"))
        except FilterError as exc:
            raise ApiError(400, str(exc)) from exc
        deliveries = await store.find_deliveries(
            where, limit=_limit(request), before=params.get("before")
        )
        return {"items": [delivery_json(d) for d in deliveries]}

    async def get_delivery(request: Request) -> dict[str, Any]:
        found = await store.get_delivery(request.path_params["id"])
        if found is None:
            raise ApiError(404, "no such delivery")
        delivery, attempts = found
        event = delivery.event.to_cloudevent() if delivery.event else None
        return {
            **delivery_json(delivery),
            "event": event,
            "attempts": [attempt_json(a) for a in attempts],
        }

    async def replay_delivery(request: Request) -> dict[str, Any]:
        return {"replayed": await operations.replay_delivery(request.path_params["id"])}

    async def replay_hook(request: Request) -> dict[str, Any]:
        name = hook_named(request)
        statuses = tuple(request.query_params.get("status", "dead").split(","))
        for status in statuses:
            _one_of(status, ("dead", "failed", "succeeded", "skipped"), "status")
        since = _since(request.query_params.get("since"))
        where = DeliveryFilter(
            hook=name,
            statuses=statuses,  # type: ignore[arg-type]
            since=since,
        )
        return {"replayed": await operations.replay_matching(where)}

    async def kept_request(request: Request) -> RequestRecord:
        return await operations.kept_request(request.path_params["id"])

    async def get_outcomes(request: Request) -> dict[str, Any]:
        record = await kept_request(request)
        return {
            "request_id": record.id,
            "status": record.status,
            "error": record.error,
            "items": await request_outcomes(parts, record),
        }

    async def run_request_again(request: Request) -> dict[str, Any]:
        record = await kept_request(request)
        message = await operations.run_again(record)
        return {
            "request_id": record.id,
            "result": message,
            "items": await request_outcomes(parts, record),
        }

    async def hook_skipped(request: Request) -> dict[str, Any]:
        return {"items": await hook_skips(parts, hook_named(request), _limit(request))}

    async def list_problems(request: Request) -> dict[str, Any]:
        statuses = request.query_params.get("status", "open,acknowledged").split(",")
        for status in statuses:
            _one_of(status, PROBLEM_STATUSES, "status")
        problems = await store.list_problems(
            hook=request.query_params.get("hook"),
            statuses=statuses,  # type: ignore[arg-type]
            limit=_limit(request),
            relay=request.query_params.get("relay"),
        )
        return {"items": [problem_json(p) for p in problems]}

    async def acknowledge_problem(request: Request) -> dict[str, Any]:
        return problem_json(await operations.acknowledge_problem(request.path_params["id"]))

    async def replay_problem(request: Request) -> dict[str, Any]:
        count, problem = await operations.replay_problem(request.path_params["id"])
        return {"replayed": count, "problem": problem_json(problem)}

    return [
        Route("/api/problems", guarded(list_problems), methods=["GET"]),
        Route("/api/problems/{id}/acknowledge", guarded(acknowledge_problem), methods=["POST"]),
        Route("/api/problems/{id}/replay", guarded(replay_problem), methods=["POST"]),
        Route("/api/requests", guarded(list_requests), methods=["GET"]),
        Route("/api/requests/{id}/outcomes", guarded(get_outcomes), methods=["GET"]),
        Route("/api/requests/{id}/run-again", guarded(run_request_again), methods=["POST"]),
        Route("/api/hooks/{name}/skipped", guarded(hook_skipped), methods=["GET"]),
        Route("/api/events", guarded(list_events), methods=["GET"]),
        Route("/api/hooks/{name}/replay", guarded(replay_hook), methods=["POST"]),
        Route("/api/deliveries", guarded(list_deliveries), methods=["GET"]),
        Route("/api/deliveries/{id}", guarded(get_delivery), methods=["GET"]),
        Route("/api/deliveries/{id}/replay", guarded(replay_delivery), methods=["POST"]),
    ]


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value).timestamp()
    except ValueError as exc:
        raise ApiError(400, f"since must be an RFC 3339 time, got {value!r}") from exc
