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
from relayhook.core.examples import recent_events
from relayhook.core.hooks import Hook, validate_hook
from relayhook.core.records import Sample
from relayhook.core.samples import (
    MAX_DRY_RUN,
    DryRun,
    dry_run,
    event_json,
    pin_event,
    pin_request,
    with_condition,
)
from relayhook.core.templating import time_budget
from relayhook.errors import ConflictError, InvalidError, NotFoundError, SpecError
from relayhook.web.api import guard
from relayhook.web.config_api import json_object
from relayhook.web.readmodel import format_epoch, request_json


def sample_json(sample: Sample) -> dict[str, Any]:
    return {"name": sample.name, "kind": sample.kind, "source_id": sample.source_id,
            "saved_at": format_epoch(sample.saved_at),
            "request": None if sample.request is None else request_json(sample.request),
            "events": [event_json(e) for e in sample.events]}


DRY_RUN_SECONDS = 1.0  # CPU time for all the renders of one dry run


def dry_run_json(result: DryRun) -> dict[str, Any]:
    return {**dataclasses.asdict(result), "summary": result.summary()}


async def pin(parts: Parts, name: str, request_id: str, event_id: str | None,
              at: float) -> Sample:
    """Pin a stored request, or one event of it; NotFoundError / ConflictError / InvalidError."""
    record = await parts.store.get_request(request_id)
    if record is None:
        raise NotFoundError(f"no stored request {request_id!r}")
    events = await parts.store.list_events(request_id=request_id, limit=1000)
    try:
        if event_id is None:
            sample = pin_request(name, record, events, at)
        else:
            event = next((e for e in events if e.id == event_id), None)
            if event is None:
                raise NotFoundError(f"request {request_id!r} has no event {event_id!r}")
            sample = pin_event(name, event, at)
    except ValueError as exc:
        raise InvalidError([SpecError(("name",), str(exc))]) from exc
    if not await parts.store.save_sample(sample):
        raise ConflictError(f"a sample named {sample.name!r} exists already")
    return sample


async def try_condition(parts: Parts, hook: Hook, when: str | None, limit: int) -> DryRun:
    """The condition `when` over the last `limit` stored events the hook takes."""
    try:
        hook = with_condition(hook, when)
    except SpecError as exc:
        raise InvalidError([exc]) from exc
    events = await recent_events(parts.store, hook, min(max(limit, 1), MAX_DRY_RUN))
    with time_budget(DRY_RUN_SECONDS):  # the whole trial, on the event loop: bounded
        return dry_run(hook, events, parts.settings.template_secrets())


def samples_api_routes(parts: Parts, token: str, clock: Callable[[], datetime]) -> list[Route]:
    store = parts.store
    guarded = guard(token)

    async def list_samples(request: Request) -> dict[str, Any]:
        return {"items": [sample_json(s) for s in await store.list_samples()]}

    async def create_sample(request: Request) -> Response:
        data = await json_object(request)
        name, request_id, event_id = (data.get(k) for k in ("name", "request_id", "event_id"))
        errors = [SpecError((key,), "required, a string") for key, value in
                  (("name", name), ("request_id", request_id)) if not isinstance(value, str)]
        if event_id is not None and not isinstance(event_id, str):
            errors.append(SpecError(("event_id",), "a string, or left out"))
        if errors:
            raise InvalidError(errors)
        sample = await pin(parts, str(name), str(request_id), event_id, clock().timestamp())
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
        return dry_run_json(await try_condition(parts, hook, when, limit))

    async def one_sample(request: Request) -> Response:
        handler = delete_sample if request.method == "DELETE" else get_sample
        return await guarded(handler)(request)

    return [
        Route("/api/samples", guarded(list_samples), methods=["GET"], name="samples_list"),
        Route("/api/samples", guarded(create_sample), methods=["POST"], name="samples_create"),
        Route("/api/samples/{name}", one_sample, methods=["GET", "DELETE"]),
        Route("/api/hooks/dry-run", guarded(hook_dry_run), methods=["POST"]),
    ]
