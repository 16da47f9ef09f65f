"""Saved samples and condition dry runs through the API (behind the admin bearer token).

GET    /api/samples                   every sample, by name
POST   /api/samples                   {"name", "request_id"[, "event_id"]}: pin a stored
                                      request (with its events), or one of its events
GET    /api/samples/{name}            one sample: its request and events
DELETE /api/samples/{name}            unpin it
POST   /api/hooks/dry-run             {"hook": NAME | the hook's keys, "when", "limit": 50}:
                                      how many of the last `limit` events the hook takes
                                      the condition holds for
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relayhook.assembly import Parts
from relayhook.core.hooks import validate_hook
from relayhook.core.records import Sample
from relayhook.core.samples import MAX_DRY_RUN, DryRun, event_json
from relayhook.errors import InvalidError, NotFoundError, SpecError
from relayhook.web.api import guard
from relayhook.web.config_api import json_object
from relayhook.web.readmodel import format_epoch, request_json


def sample_json(sample: Sample) -> dict[str, Any]:
    return {
        "name": sample.name,
        "kind": sample.kind,
        "source_id": sample.source_id,
        "saved_at": format_epoch(sample.saved_at),
        "request": None if sample.request is None else request_json(sample.request),
        "events": [event_json(e) for e in sample.events],
    }


def dry_run_json(result: DryRun) -> dict[str, Any]:
    return {**dataclasses.asdict(result), "summary": result.summary()}


def samples_api_routes(parts: Parts, token: str, clock: Callable[[], datetime]) -> list[Route]:
    store = parts.store
    guarded = guard(token)

    async def list_samples(request: Request) -> dict[str, Any]:
        return {"items": [sample_json(s) for s in await store.list_samples()]}

    async def create_sample(request: Request) -> Response:
        data = await json_object(request)
        name, request_id, event_id = (data.get(k) for k in ("name", "request_id", "event_id"))
        errors = [
            SpecError((key,), "required, a string")
            for key, value in (("name", name), ("request_id", request_id))
            if not isinstance(value, str)
        ]
        if event_id is not None and not isinstance(event_id, str):
            errors.append(SpecError(("event_id",), "a string, or left out"))
        if errors:
            raise InvalidError(errors)
        sample = await parts.operations.pin_sample(str(name), str(request_id), event_id)
        return JSONResponse(sample_json(sample), 201)

    async def get_sample(request: Request) -> dict[str, Any]:
        sample = await store.get_sample(request.path_params["name"])
        if sample is None:
            raise NotFoundError("no such sample")
        return sample_json(sample)

    async def delete_sample(request: Request) -> Response:
        if not await store.delete_sample(request.path_params["name"]):
            raise NotFoundError("no such sample")
        return Response(status_code=204)

    async def hook_dry_run(request: Request) -> dict[str, Any]:
        data = await json_object(request)
        limit = data.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_DRY_RUN:
            raise InvalidError([SpecError(("limit",), f"a whole number from 1 to {MAX_DRY_RUN}")])
        raw = data.get("hook")
        if isinstance(raw, str):
            hook = parts.manager.hook(raw)
        elif isinstance(raw, dict):
            hook = validate_hook(raw)
        else:
            raise InvalidError([SpecError(("hook",), "a hook's name, or its keys as an object")])
        when = data.get("when", hook.spec.when)
        if when is not None and not isinstance(when, str):
            raise InvalidError([SpecError(("when",), "a string, or left out")])
        return dry_run_json(await parts.operations.dry_run(hook, when, limit))

    async def one_sample(request: Request) -> Response:
        handler = delete_sample if request.method == "DELETE" else get_sample
        return await guarded(handler)(request)

    return [
        Route("/api/samples", guarded(list_samples), methods=["GET"], name="samples_list"),
        Route("/api/samples", guarded(create_sample), methods=["POST"], name="samples_create"),
        Route("/api/samples/{name}", one_sample, methods=["GET", "DELETE"]),
        Route("/api/hooks/dry-run", guarded(hook_dry_run), methods=["POST"]),
    ]
