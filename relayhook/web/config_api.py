"""The JSON API for the live configuration, behind the admin bearer token.

    GET    /api/connectors                  connectors: id, title, setup, event types, example
    GET    /api/relays                      relays, URLs (no secrets), newest request, 24 h counts
    POST   /api/relays                      {"name", "connector", "secret"?} -> 201, secret shown
    POST   /api/relays/{name}/secret        reveal; {"rotate": true} makes a new one
    PUT    /api/relays/{name}/expect        {"expect": {"at_least": N, "minutes": M} | null}:
                                            a fixed quiet rule (also in POST /api/relays)
    GET    /api/relays/{name}/shape         the fields its payloads carry, per event type
    DELETE /api/relays/{name}               -> 204; the URL answers 404, its requests stay
    GET    /api/hooks                       hooks, whether active (and why not), deliveries, 24 h
    POST   /api/hooks                       the keys of a [[hooks]] table as JSON -> 201
    GET    /api/hooks/{name}                one hook; `spec` is what PUT takes back
    PUT    /api/hooks/{name}                replace it ([redacted] values keep their secret)
    POST   /api/hooks/check[?name=NAME]     a proposed hook's findings, nothing saved
    GET    /api/diagnostics                 every finding of the running configuration
    DELETE /api/hooks/{name}                -> 204; its unsent deliveries end `cancelled`
    POST   /api/hooks/{name}/activate | /deactivate

Invalid input is 422 `{"error", "errors": [{"field": "headers.Authorization", "message"}]}`
with the messages `relayhook check` prints; a name taken or a config-file item is 409. A hook
that validates but in which diagnostics finds an error (relayhook.diagnostics) is 422 too, with
`"findings": [{"level", "location", "message", "nearest"}]`; `?accept_findings=true` on POST or
PUT saves it anyway. A saved hook's answer carries its `findings` (warnings).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relayhook.assembly import Parts
from relayhook.diagnostics import running_diagnosis
from relayhook.errors import InvalidError, SpecError
from relayhook.manage import describe_connector, expect_rule
from relayhook.relays import Relay
from relayhook.web import readmodel
from relayhook.web.api import Handler, guard


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object, else InvalidError (422)."""
    try:
        data = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidError([SpecError(("(body)",), f"not JSON: {exc}")]) from exc
    if not isinstance(data, dict):
        raise InvalidError([SpecError(("(body)",), "expected a JSON object")])
    return data


def config_api_routes(parts: Parts, token: str) -> list[Route]:
    store, manager = parts.store, parts.manager
    guarded = guard(token)

    def relay_json(
        relay: Relay, failures: dict[str, tuple[int, str]], secret: bool = False
    ) -> dict[str, Any]:
        return readmodel.relay_json(parts, relay, failures, secret)

    async def hook_json(name: str) -> dict[str, Any]:
        return await readmodel.hook_json(parts, name)

    async def list_connectors(request: Request) -> dict[str, Any]:
        infos = [describe_connector(c) for _, c in sorted(parts.connectors.items())]
        return {
            "items": [
                {
                    "id": i.id,
                    "title": i.title,
                    "description": i.description,
                    "setup": i.setup,
                    "event_types": list(i.event_types),
                    "example": i.example,
                }
                for i in infos
            ]
        }

    async def list_relays(request: Request) -> dict[str, Any]:
        return {"items": await readmodel.relay_summaries(parts, time.time())}

    async def relay_shape(request: Request) -> dict[str, Any]:
        relay = manager.relay(request.path_params["name"])
        return {"relay": relay.name, "items": await readmodel.relay_shapes(parts, relay.name)}

    async def create_relay(request: Request) -> Response:
        data = await json_object(request)
        if data.get("expect") is not None:
            expect_rule(data["expect"])  # refused before the relay is made
        relay = await manager.create_relay(
            data.get("name"),  # type: ignore[arg-type]
            data.get("connector"),  # type: ignore[arg-type]
            data.get("secret"),
        )
        if data.get("expect") is not None:
            relay = await manager.set_expect(relay.name, data["expect"])
        return JSONResponse(relay_json(relay, {}, secret=True), 201)

    async def relay_expect(request: Request) -> dict[str, Any]:
        data = await json_object(request)
        relay = await manager.set_expect(request.path_params["name"], data.get("expect"))
        return relay_json(relay, await store.auth_failures())

    async def relay_secret(request: Request) -> dict[str, Any]:
        data = await json_object(request)
        relay = await manager.relay_secret(
            request.path_params["name"], rotate=data.get("rotate") is True
        )
        return relay_json(relay, await store.auth_failures(), secret=True)

    async def delete_relay(request: Request) -> Response:
        await manager.delete_relay(request.path_params["name"])
        return Response(status_code=204)

    async def list_hooks(request: Request) -> dict[str, Any]:
        return {"items": await readmodel.hook_summaries(parts, time.time())}

    def accept_findings(request: Request) -> bool:
        return request.query_params.get("accept_findings", "").lower() in ("1", "true", "yes")

    async def with_findings(name: str) -> dict[str, Any]:
        findings = await manager.hook_findings(name)
        return {**await hook_json(name), "findings": [f.to_json() for f in findings]}

    async def create_hook(request: Request) -> Response:
        hook = await manager.create_hook(
            await json_object(request), accept_findings=accept_findings(request)
        )
        return JSONResponse(await with_findings(hook.name), 201)

    async def get_hook(request: Request) -> dict[str, Any]:
        return await with_findings(manager.hook(request.path_params["name"]).name)

    async def replace_hook(request: Request) -> dict[str, Any]:
        hook = await manager.replace_hook(
            request.path_params["name"],
            await json_object(request),
            accept_findings=accept_findings(request),
        )
        return await with_findings(hook.name)

    async def check_hook(request: Request) -> dict[str, Any]:
        name = request.query_params.get("name")
        findings = await manager.proposed_findings(await json_object(request), name)
        return {"findings": [f.to_json() for f in findings]}

    async def diagnostics(request: Request) -> dict[str, Any]:
        findings = await running_diagnosis(parts)
        return {
            "errors": sum(f.level == "error" for f in findings),
            "warnings": sum(f.level == "warning" for f in findings),
            "findings": [f.to_json() for f in findings],
        }

    async def delete_hook(request: Request) -> Response:
        await manager.delete_hook(request.path_params["name"])
        return Response(status_code=204)

    def set_active(active: bool) -> Handler:
        async def handler(request: Request) -> dict[str, Any]:
            name = request.path_params["name"]
            changed = await manager.set_active(name, active, "deactivated through the API")
            parts.wake()
            return {"name": name, "active": active, "deliveries_changed": changed}

        return handler

    def one(**methods: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
        async def endpoint(request: Request) -> Any:
            return await methods[request.method.lower()](request)

        return endpoint

    return [
        Route("/api/connectors", guarded(list_connectors), methods=["GET"]),
        Route(
            "/api/relays", guarded(one(get=list_relays, post=create_relay)), methods=["GET", "POST"]
        ),
        Route("/api/relays/{name}", guarded(delete_relay), methods=["DELETE"]),
        Route("/api/relays/{name}/secret", guarded(relay_secret), methods=["POST"]),
        Route("/api/relays/{name}/shape", guarded(relay_shape), methods=["GET"]),
        Route("/api/relays/{name}/expect", guarded(relay_expect), methods=["PUT"]),
        Route(
            "/api/hooks", guarded(one(get=list_hooks, post=create_hook)), methods=["GET", "POST"]
        ),
        Route("/api/hooks/check", guarded(check_hook), methods=["POST"]),
        Route(
            "/api/hooks/{name}",
            guarded(one(get=get_hook, put=replace_hook, delete=delete_hook)),
            methods=["GET", "PUT", "DELETE"],
        ),
        Route("/api/diagnostics", guarded(diagnostics), methods=["GET"]),
        Route("/api/hooks/{name}/activate", guarded(set_active(True)), methods=["POST"]),
        Route("/api/hooks/{name}/deactivate", guarded(set_active(False)), methods=["POST"]),
    ]
